package app_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/pgtest"
)

// TestConnectPostgresTLS: the replicator's pool (ConnectPostgres, from the
// configured URL) reaches a server that requires TLS and a client
// certificate with sslmode=verify-full, and refuses, at once, a server
// whose certificate does not name the host or comes from another CA;
// the server refuses a client without a certificate, or without TLS.
func TestConnectPostgresTLS(t *testing.T) {
	ca := pgtest.NewCA(t, "pg")
	other := pgtest.NewCA(t, "other")
	srvCert, srvKey := ca.Server(t, "server", "localhost") // not 127.0.0.1
	cliCert, cliKey := ca.Client(t, "postgres")
	c, err := pgtest.Start(pgtest.Options{TLS: &pgtest.TLS{CertFile: srvCert, KeyFile: srvKey, CAFile: ca.CertFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	params := func(root string, cert bool) url.Values {
		v := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {root}}
		if cert {
			v.Set("sslcert", cliCert)
			v.Set("sslkey", cliKey)
		}
		return v
	}
	isA := func(target any) func(error) bool {
		return func(err error) bool { return errors.As(err, target) }
	}
	refusedWith := func(code string) func(error) bool {
		return func(err error) bool {
			var pgErr *pgconn.PgError
			return errors.As(err, &pgErr) && pgErr.Code == code
		}
	}
	for _, tc := range []struct {
		name string
		url  string
		want func(error) bool // nil: connects
	}{
		{"verify-full with a client certificate", c.TCPURL("postgres", "localhost", params(ca.CertFile, true)), nil},
		{"host name the certificate does not carry", c.TCPURL("postgres", "127.0.0.1", params(ca.CertFile, true)), isA(new(x509.HostnameError))},
		{"certificate of an unknown CA", c.TCPURL("postgres", "localhost", params(other.CertFile, true)), isA(new(x509.UnknownAuthorityError))},
		{"no client certificate", c.TCPURL("postgres", "localhost", params(ca.CertFile, false)), refusedWith("28000")},
		{"no TLS", c.TCPURL("postgres", "localhost", url.Values{"sslmode": {"disable"}}), refusedWith("28000")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			pool, err := app.ConnectPostgres(ctx, tc.url, 2)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("ConnectPostgres: %v", err)
				}
				defer pool.Close()
				var ssl bool
				if err := pool.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
					t.Fatalf("connection is not TLS: ssl=%v err=%v", ssl, err)
				}
				return
			}
			if err == nil {
				pool.Close()
				t.Fatal("connected; want a refusal")
			}
			if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				t.Fatalf("ConnectPostgres retried until the deadline; a refused certificate or identity must stop start-up at once: %v", err)
			}
			if !tc.want(err) {
				t.Fatalf("ConnectPostgres: %v (%T); not the expected refusal", err, err)
			}
		})
	}
}

// TestUnverifiedPostgres: the start-up warning names remote hosts reached
// without verify-full, and stays quiet for verified, loopback and socket
// targets.
func TestUnverifiedPostgres(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	for _, tc := range []struct {
		url   string
		hosts []string
		mode  string
	}{
		{"postgres://cdc@db.internal/escrow", []string{"db.internal"}, "prefer (the default)"},
		{"postgres://cdc@db.internal/escrow?sslmode=disable", []string{"db.internal"}, "disable"},
		{"postgres://cdc@db.internal/escrow?sslmode=allow", []string{"db.internal"}, "allow"},
		{"postgres://cdc@db.internal/escrow?sslmode=prefer", []string{"db.internal"}, "prefer"},
		{"postgres://cdc@db.internal/escrow?sslmode=require", []string{"db.internal"}, "require"},
		{"postgres://cdc@db1.internal,db2.internal:5433,127.0.0.1/escrow?sslmode=require", []string{"db1.internal", "db2.internal"}, "require"},
		{"postgres://cdc@db.internal/escrow?sslmode=verify-full", nil, ""},
		{"postgres://cdc@db.internal/escrow?sslmode=verify-ca", nil, ""},
		{"postgres://cdc@db.internal/escrow?sslmode=require&sslrootcert=system", nil, ""},
		{"postgres://cdc@127.0.0.1:5432/escrow?sslmode=disable", nil, ""},
		{"postgres://cdc@localhost/escrow?sslmode=disable", nil, ""},
		{"postgres://cdc@[::1]:5432/escrow", nil, ""},
		{"postgres://cdc@/escrow?host=/var/run/postgresql", nil, ""},
	} {
		t.Run(tc.url, func(t *testing.T) {
			hosts, mode := app.UnverifiedPostgres(tc.url)
			if !reflect.DeepEqual(hosts, tc.hosts) || mode != tc.mode {
				t.Fatalf("UnverifiedPostgres = %q, %q; want %q, %q", hosts, mode, tc.hosts, tc.mode)
			}
		})
	}
	t.Run("PGSSLMODE", func(t *testing.T) {
		t.Setenv("PGSSLMODE", "verify-full")
		if hosts, _ := app.UnverifiedPostgres("postgres://cdc@db.internal/escrow"); hosts != nil {
			t.Fatalf("PGSSLMODE=verify-full: warned about %q", hosts)
		}
	})
}

// TestOpenBusEmbeddedAuth (acceptance 3): configured through the
// environment with the password in a file, an embedded server on 0.0.0.0
// starts with that credential, the process connects with it and declares
// its streams, and a client without it cannot read them. Without a
// credential the configuration is refused naming the fix, and OpenBus
// refuses too.
func TestOpenBusEmbeddedAuth(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "nats-password")
	if err := os.WriteFile(pwFile, []byte("embedded-pw-81f3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	environ := func(extra ...string) func() []string {
		return func() []string {
			return append([]string{
				"CDC_MONGO_URI=mongodb://127.0.0.1:27017/?replicaSet=rs0", "CDC_MONGO_DATABASE=escrow",
				"CDC_PG_URL=postgres://cdc@127.0.0.1/escrow",
				"CDC_NATS__EMBEDDED__HOST=0.0.0.0", "CDC_NATS__EMBEDDED__PORT=-1", "CDC_DATA_DIR=" + dir,
			}, extra...)
		}
	}

	t.Run("no credential", func(t *testing.T) {
		cfg, err := config.Load("", environ())
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.Validate(config.RoleAll)
		var ve config.ValidationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), "nats.embedded.host") || !strings.Contains(err.Error(), "nats.auth.password_file") {
			t.Fatalf("Validate: %v; want an error on nats.embedded.host naming nats.auth.password_file", err)
		}
		if b, err := app.OpenBus(t.Context(), &cfg, "cdc", 0, zap.NewNop()); !errors.Is(err, bus.ErrEmbeddedNeedsAuth) {
			if b != nil {
				b.Close()
			}
			t.Fatalf("OpenBus: %v; want ErrEmbeddedNeedsAuth", err)
		}
	})

	cfg, err := config.Load("", environ("CDC_NATS__AUTH__USER=cdc", "CDC_NATS__AUTH__PASSWORD_FILE="+pwFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(config.RoleAll); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	b, err := app.OpenBus(ctx, &cfg, "cdc", 0, zap.NewNop())
	if err != nil {
		t.Fatalf("OpenBus with a credential: %v", err)
	}
	defer b.Close()
	if _, err := b.JS.Publish(ctx, "cdc.escrow.payments", []byte("event")); err != nil {
		t.Fatal(err)
	}
	url := b.Embedded.ClientURL()

	read := func(opts ...nats.Option) (string, error) {
		nc, err := nats.Connect(url, append(opts, nats.NoReconnect())...)
		if err != nil {
			return "", err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return "", err
		}
		stream, err := js.Stream(ctx, cfg.NATS.Stream)
		if err != nil {
			return "", err
		}
		msg, err := stream.GetLastMsgForSubject(ctx, "cdc.escrow.payments")
		if err != nil {
			return "", err
		}
		return string(msg.Data), nil
	}
	if _, err := read(); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("client without credentials: %v; want an authorization violation", err)
	}
	if _, err := read(nats.UserInfo("cdc", "wrong")); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("client with a wrong password: %v; want an authorization violation", err)
	}
	if got, err := read(nats.UserInfo("cdc", "embedded-pw-81f3")); err != nil || got != "event" {
		t.Fatalf("client with the credential: %q, %v", got, err)
	}
}
