package pgtest_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/amanat/cdc/pkg/pgtest"
)

// TestTLSCluster: with Options.TLS the harness works over its unix socket
// (NewDatabase), TCP needs TLS and a client certificate of the role, and
// the server presents the test's certificate.
func TestTLSCluster(t *testing.T) {
	ca := pgtest.NewCA(t, "pg")
	srvCert, srvKey := ca.Server(t, "server", "localhost", "127.0.0.1")
	cliCert, cliKey := ca.Client(t, "postgres")
	otherCert, otherKey := ca.Client(t, "someone-else")
	c, err := pgtest.Start(pgtest.Options{TLS: &pgtest.TLS{CertFile: srvCert, KeyFile: srvKey, CAFile: ca.CertFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	// The harness's own path still works.
	connect(t, c.NewDatabase(t))

	verified := func(cert, key string) url.Values {
		v := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {ca.CertFile}}
		if cert != "" {
			v.Set("sslcert", cert)
			v.Set("sslkey", key)
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		params url.Values
		code   string // "" connects; else the SQLSTATE of the refusal
	}{
		{"client certificate of the role", verified(cliCert, cliKey), ""},
		{"no client certificate", verified("", ""), "28000"},
		{"certificate of another role", verified(otherCert, otherKey), "28000"},
		{"plain TCP", url.Values{"sslmode": {"disable"}}, "28000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, c.TCPURL("postgres", "127.0.0.1", tc.params))
			if tc.code != "" {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != tc.code {
					if conn != nil {
						conn.Close(ctx)
					}
					t.Fatalf("connect: %v; want the server's refusal %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer conn.Close(context.WithoutCancel(ctx))
			var ssl bool
			var dn string
			if err := conn.QueryRow(ctx, "SELECT ssl, coalesce(client_dn, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &dn); err != nil {
				t.Fatal(err)
			}
			if !ssl || dn != "/CN=postgres" {
				t.Fatalf("pg_stat_ssl: ssl=%v client_dn=%q; want TLS with the client certificate /CN=postgres", ssl, dn)
			}
		})
	}
}
