package metrics

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"
)

// testPKI is a CA and a server certificate for 127.0.0.1 signed by it,
// written as PEM files into a directory.
type testPKI struct {
	dir      string
	caPool   *x509.CertPool
	certFile string
	keyFile  string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cdc test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cdc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{dir: dir, caPool: x509.NewCertPool(),
		certFile: filepath.Join(dir, "server.crt"), keyFile: filepath.Join(dir, "server.key")}
	p.caPool.AddCert(ca)
	writeFile(t, p.certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, p.keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return p
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func bcryptHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// serve starts Serve on 127.0.0.1:0 with webConfig (a path or "") and
// returns the bound address; the server stops when the test ends.
func serve(t *testing.T, webConfig string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Serve(ctx, ServeConfig{Addr: "127.0.0.1:0", WebConfigFile: webConfig},
			Handler(New(), NewHealth()), zap.NewNop(), func(a net.Addr) { addrc <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	select {
	case a := <-addrc:
		return a.String()
	case err := <-errc:
		t.Fatalf("Serve did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not start within 10s")
	}
	return ""
}

// get requests url with basic auth when user is not empty and returns
// the status code.
func get(t *testing.T, client *http.Client, url, user, pass string) (int, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestServeTLSAndBasicAuth: with a web configuration file holding a
// certificate and a bcrypt-hashed user, every path is served over TLS to
// that user only; a wrong password, an unknown user or no credentials get
// 401, plain HTTP and a client that does not trust the CA get nothing,
// and a password rotated in the file takes effect without a restart.
func TestServeTLSAndBasicAuth(t *testing.T) {
	pki := newTestPKI(t)
	webConfig := filepath.Join(pki.dir, "web.yml")
	writeConfig := func(password string) {
		writeFile(t, webConfig, fmt.Sprintf("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"+
			"basic_auth_users:\n  prometheus: %s\n", bcryptHash(t, password)))
	}
	writeConfig("right-password")
	addr := serve(t, webConfig)
	trusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.caPool}}}
	base := "https://" + addr

	for _, tc := range []struct {
		name       string
		path       string
		user, pass string
		want       int
	}{
		{"metrics with the right password", "/metrics", "prometheus", "right-password", http.StatusOK},
		{"healthz with the right password", "/healthz", "prometheus", "right-password", http.StatusOK},
		{"readyz with the right password", "/readyz", "prometheus", "right-password", http.StatusOK},
		{"wrong password", "/metrics", "prometheus", "wrong-password", http.StatusUnauthorized},
		{"unknown user", "/metrics", "someone", "right-password", http.StatusUnauthorized},
		{"no credentials", "/healthz", "", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := get(t, trusting, base+tc.path, tc.user, tc.pass)
			if err != nil || code != tc.want {
				t.Fatalf("GET %s as %q: %d, %v; want %d", tc.path, tc.user, code, err, tc.want)
			}
		})
	}

	t.Run("plain HTTP is refused", func(t *testing.T) {
		code, err := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/metrics", "prometheus", "right-password")
		// net/http answers a plain request on a TLS port with 400.
		if err == nil && code != http.StatusBadRequest {
			t.Fatalf("plain HTTP: %d, want 400 or a transport error", code)
		}
	})
	t.Run("a client that does not trust the CA", func(t *testing.T) {
		_, err := get(t, &http.Client{Timeout: 5 * time.Second}, base+"/metrics", "prometheus", "right-password")
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("untrusting client: %v, want x509.UnknownAuthorityError", err)
		}
	})
	t.Run("password rotated in the file, no restart", func(t *testing.T) {
		writeConfig("new-password")
		if code, err := get(t, trusting, base+"/metrics", "prometheus", "right-password"); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("old password after rotation: %d, %v; want 401", code, err)
		}
		if code, err := get(t, trusting, base+"/metrics", "prometheus", "new-password"); err != nil || code != http.StatusOK {
			t.Fatalf("new password after rotation: %d, %v; want 200", code, err)
		}
	})
}

// TestServeBasicAuthWithoutTLS: basic_auth_users alone protect a plain
// HTTP endpoint; no web configuration serves everyone.
func TestServeBasicAuthWithoutTLS(t *testing.T) {
	dir := t.TempDir()
	webConfig := filepath.Join(dir, "web.yml")
	writeFile(t, webConfig, "basic_auth_users:\n  prometheus: "+bcryptHash(t, "pw")+"\n")
	authAddr, openAddr := serve(t, webConfig), serve(t, "")
	client := &http.Client{Timeout: 5 * time.Second}
	for _, tc := range []struct {
		name       string
		addr       string
		user, pass string
		want       int
	}{
		{"auth: right password", authAddr, "prometheus", "pw", http.StatusOK},
		{"auth: wrong password", authAddr, "prometheus", "nope", http.StatusUnauthorized},
		{"auth: none given", authAddr, "", "", http.StatusUnauthorized},
		{"no web config", openAddr, "", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := get(t, client, "http://"+tc.addr+"/metrics", tc.user, tc.pass)
			if err != nil || code != tc.want {
				t.Fatalf("GET /metrics: %d, %v; want %d", code, err, tc.want)
			}
		})
	}
}

// TestServeRefusesInvalidWebConfig: a web configuration file that cannot
// be used stops Serve before it listens.
func TestServeRefusesInvalidWebConfig(t *testing.T) {
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name string
		text string // "" leaves the file absent
	}{
		{"missing file", ""},
		{"password not a bcrypt hash", "basic_auth_users:\n  prometheus: plain-text\n"},
		{"unknown key", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  no_such_key: 1\n"},
		{"certificate file missing", "tls_server_config:\n  cert_file: absent.crt\n  key_file: server.key\n"},
		{"key without certificate", "tls_server_config:\n  key_file: server.key\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(pki.dir, strings.ReplaceAll(tc.name, " ", "_")+".yml")
			if tc.text != "" {
				writeFile(t, path, tc.text)
			}
			started := false
			err := Serve(context.Background(), ServeConfig{Addr: "127.0.0.1:0", WebConfigFile: path},
				http.NotFoundHandler(), zap.NewNop(), func(net.Addr) { started = true })
			if err == nil || started || !strings.Contains(err.Error(), "http.web_config_file") {
				t.Fatalf("Serve = %v (listened: %v), want an http.web_config_file error before listening", err, started)
			}
		})
	}
}

// TestReadyzNamesSystemNotCredentials: while Postgres and Mongo are
// unreachable and the sink fails with an error naming its connection,
// /readyz names each system and the class of its failure and nothing of
// the connection strings (user, database, host), while the log holds the
// full errors, once per failure.
func TestReadyzNamesSystemNotCredentials(t *testing.T) {
	const user, db, password = "secretuser", "secretdb", "secretpw"
	// Port 1 on loopback: nothing listens, the connection is refused.
	pgURL := fmt.Sprintf("postgres://%s:%s@127.0.0.1:1/%s?connect_timeout=1", user, password, db)
	mongoURI := fmt.Sprintf("mongodb://%s:%s@127.0.0.1:1/%s?directConnection=true&serverSelectionTimeoutMS=250&connectTimeoutMS=250",
		user, password, db)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(mongoURI))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx) //nolint:errcheck // test teardown

	core, logs := observer.New(zap.InfoLevel)
	m, h := New(), NewHealth()
	h.SetLogger(zap.New(core))
	h.Check("postgres", func(ctx context.Context) error { return pool.Ping(ctx) })
	h.Check("mongo", func(ctx context.Context) error { return client.Ping(ctx, readpref.Primary()) })
	h.Check("nats", func(context.Context) error { return Reason("connection RECONNECTING") })
	h.Expect("sink", time.Minute)
	m.ForSink(h).SetFailing(time.Now().Add(-2*time.Minute), true,
		fmt.Sprintf("commit: failed to connect to `user=%s database=%s`: 127.0.0.1:5432 (db.internal): dial error", user, db))

	rec := httptest.NewRecorder()
	Handler(m, h).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz: %d %s, want 503", rec.Code, body)
	}
	for _, leak := range []string{user, db, password, "127.0.0.1", "db.internal"} {
		if strings.Contains(body, leak) {
			t.Errorf("/readyz shows %q: %s", leak, body)
		}
	}
	for _, want := range []string{
		`"postgres":"unreachable: connection refused"`,
		`"mongo":"unreachable: connection refused"`,
		`"nats":"unreachable: connection RECONNECTING"`,
		`"sink":"failing since `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz lacks %s: %s", want, body)
		}
	}
	// The full errors are the operator's, in the log.
	failed := logs.FilterMessage("readiness check failed")
	for _, system := range []string{"postgres", "mongo"} {
		entries := failed.FilterField(zap.String("system", system)).All()
		if len(entries) != 1 {
			t.Fatalf("%d log entries for %s's failure, want 1: %v", len(entries), system, failed.All())
		}
		if e := entries[0].ContextMap()["error"]; !strings.Contains(fmt.Sprint(e), "127.0.0.1:1") {
			t.Errorf("%s: the logged error %q does not name the host", system, e)
		}
	}
	// A second probe during the same outage logs nothing new.
	_ = h.Ready(ctx)
	if n := logs.FilterMessage("readiness check failed").Len(); n != 3 {
		t.Errorf("%d failure log entries after a second probe, want 3 (postgres, mongo, nats once each)", n)
	}
}

// TestReasonClass: each failure is classified by its type, never shown
// as its text.
func TestReasonClass(t *testing.T) {
	secret := errors.New("user=bob database=money host=db1.internal")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"explicit reason", fmt.Errorf("wrapped: %w", Reason("connection CLOSED")), "connection CLOSED"},
		{"password refused", fmt.Errorf("connect %w: %w", secret, &pgconn.PgError{Code: "28P01"}), "authentication failed (SQLSTATE 28P01)"},
		{"server shutting down", &pgconn.PgError{Code: "57P01"}, "server error (SQLSTATE 57P01)"},
		{"refused", fmt.Errorf("%w: %w", secret, &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "connection refused"},
		{"name resolution", fmt.Errorf("%w: %w", secret, &net.DNSError{Name: "db1.internal", Err: "no such host"}), "name resolution failed"},
		{"untrusted certificate", fmt.Errorf("%w: %w", secret, x509.UnknownAuthorityError{}), "TLS certificate rejected"},
		{"wrong host in certificate", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "db1.internal"}}, "TLS certificate rejected"},
		{"deadline", fmt.Errorf("%w: %w", secret, context.DeadlineExceeded), "timeout"},
		{"closed", fmt.Errorf("%w: %w", secret, io.ErrUnexpectedEOF), "connection closed"},
		{"anything else", secret, "error (the full error is in the log)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reasonClass(tc.err); got != tc.want {
				t.Fatalf("reasonClass(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestProfilingOnlyWhenAsked(t *testing.T) {
	m, h := New(), NewHealth()
	for _, on := range []bool{false, true} {
		rec := httptest.NewRecorder()
		Handler(m, h, WithProfiling(on)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/heap?debug=1", nil))
		if got, want := rec.Code == http.StatusOK, on; got != want {
			t.Fatalf("http.pprof %v: /debug/pprof/heap answered %d", on, rec.Code)
		}
	}
}
