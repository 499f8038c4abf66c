package bus_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/pgtest"
)

// startServer runs an in-process nats-server with opts (loopback, a free
// port, no logging) until the test ends.
func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatal("nats-server not ready within 10s")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

// tlsServer runs a nats-server that requires TLS with a client
// certificate signed by ca (tls { verify: true }: ClientAuth
// RequireAndVerifyClientCert), presenting certFile/keyFile.
func tlsServer(t *testing.T, ca *pgtest.CA, certFile, keyFile string) *server.Server {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file does not parse")
	}
	return startServer(t, &server.Options{
		TLS:       true,
		TLSVerify: true,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
		},
		TLSTimeout: 5,
	})
}

// connect is what pkg/app does: ClientOptions from the configuration,
// then Connect. The deadline is far beyond a permanent refusal, which
// must come back at once.
func connect(t *testing.T, n config.NATSConfig) (*nats.Conn, error) {
	t.Helper()
	opts, err := bus.ClientOptions(n)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	nc, _, err := bus.Connect(ctx, n.URL, "tls-test", 0, zap.NewNop(), opts...)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Connect retried until its deadline; a refusal that cannot heal must return at once: %v", err)
		}
		return nil, err
	}
	t.Cleanup(nc.Close)
	return nc, nil
}

// roundTrip proves the connection carries messages.
func roundTrip(t *testing.T, nc *nats.Conn) {
	t.Helper()
	sub, err := nc.SubscribeSync("tls.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("tls.test", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if string(msg.Data) != "hello" {
		t.Fatalf("round trip: got %q", msg.Data)
	}
}

// TestConnectTLSClientCertificate: the replicator's NATS connection
// verifies the server's certificate (CA, name) and presents its own to a
// server that requires one; every mismatch is refused, and refusals the
// client detects end the start-up at once.
func TestConnectTLSClientCertificate(t *testing.T) {
	ca := pgtest.NewCA(t, "nats")
	other := pgtest.NewCA(t, "other")
	srvCert, srvKey := ca.Server(t, "server", "localhost")
	wrongCert, wrongKey := ca.Server(t, "wrong", "nats.wrong.example")
	cliCert, cliKey := ca.Client(t, "cdc")
	strangerCert, strangerKey := other.Client(t, "cdc")

	good := tlsServer(t, ca, srvCert, srvKey)
	wrong := tlsServer(t, ca, wrongCert, wrongKey)
	url := func(s *server.Server, host string) string {
		return fmt.Sprintf("tls://%s:%d", host, port(s))
	}
	withTLS := func(u string, t config.NATSTLSConfig) config.NATSConfig { return config.NATSConfig{URL: u, TLS: t} }
	full := config.NATSTLSConfig{CAFile: ca.CertFile, CertFile: cliCert, KeyFile: cliKey}

	for _, tc := range []struct {
		name string
		n    config.NATSConfig
		// check judges the error; nil means the connection must work.
		check func(error) string
	}{
		{"CA and client certificate", withTLS(url(good, "localhost"), full), nil},
		{"server name given for an IP", withTLS(url(good, "127.0.0.1"),
			config.NATSTLSConfig{CAFile: ca.CertFile, CertFile: cliCert, KeyFile: cliKey, ServerName: "localhost"}), nil},
		{"certificate for another name", withTLS(url(wrong, "localhost"), full), wantErr[x509.HostnameError](true)},
		{"IP the certificate does not name", withTLS(url(good, "127.0.0.1"), full), wantErr[x509.HostnameError](true)},
		{"server name override that does not match", withTLS(url(good, "localhost"),
			config.NATSTLSConfig{CAFile: ca.CertFile, CertFile: cliCert, KeyFile: cliKey, ServerName: "nats.wrong.example"}), wantErr[x509.HostnameError](true)},
		{"server signed by an unknown CA", withTLS(url(good, "localhost"),
			config.NATSTLSConfig{CAFile: other.CertFile, CertFile: cliCert, KeyFile: cliKey}), wantErr[x509.UnknownAuthorityError](true)},
		// nats.go upgrades when the server's INFO says tls_required, and
		// verifies against the system roots, which do not hold the test CA.
		{"nats:// URL without TLS settings", config.NATSConfig{URL: fmt.Sprintf("nats://localhost:%d", port(good))}, wantErr[x509.UnknownAuthorityError](true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := connect(t, tc.n)
			if tc.check == nil {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				roundTrip(t, nc)
				if st, err := nc.TLSConnectionState(); err != nil || len(st.PeerCertificates) == 0 {
					t.Fatalf("connection is not TLS: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("connected; want a refusal")
			}
			if msg := tc.check(err); msg != "" {
				t.Fatal(msg)
			}
		})
	}

	// The server refuses a client without a certificate or with one of an
	// unknown CA. It says so after the client's side of the handshake, so
	// one attempt is made here (bus.Connect would retry it as an outage).
	for _, tc := range []struct {
		name string
		tls  config.NATSTLSConfig
	}{
		{"no client certificate", config.NATSTLSConfig{CAFile: ca.CertFile}},
		{"client certificate of an unknown CA", config.NATSTLSConfig{CAFile: ca.CertFile, CertFile: strangerCert, KeyFile: strangerKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := bus.ClientOptions(config.NATSConfig{TLS: tc.tls})
			if err != nil {
				t.Fatal(err)
			}
			nc, err := nats.Connect(url(good, "localhost"), append(opts, nats.NoReconnect(), nats.Timeout(5*time.Second))...)
			if err == nil {
				// TLS 1.3: the refusal may arrive with the first reply.
				err = nc.Flush()
				nc.Close()
			}
			if err == nil {
				t.Fatal("the server accepted a client without a valid certificate")
			}
		})
	}
}

func port(s *server.Server) int { return s.Addr().(*net.TCPAddr).Port }

// wantErr judges an error that must hold an E (errors.As) and be
// permanent (bus.PermanentConnectError) as asked.
func wantErr[E error](permanent bool) func(error) string {
	return func(err error) string {
		var target E
		if !errors.As(err, &target) {
			return fmt.Sprintf("error %v (%T) holds no %T", err, err, target)
		}
		if bus.PermanentConnectError(err) != permanent {
			return fmt.Sprintf("PermanentConnectError(%v) = %v, want %v", err, !permanent, permanent)
		}
		return ""
	}
}

// wantIs judges an error that must be target (errors.Is) and permanent.
func wantIs(target error) func(error) string {
	return func(err error) string {
		if !errors.Is(err, target) {
			return fmt.Sprintf("error %v is not %v", err, target)
		}
		if !bus.PermanentConnectError(err) {
			return fmt.Sprintf("PermanentConnectError(%v) = false, want true", err)
		}
		return ""
	}
}
