package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	neturl "net/url"
	"os"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/config"
)

// UnverifiedPostgres names the remote hosts of a PostgreSQL URL that would
// be reached without verifying the server's certificate, and the sslmode
// that lets it happen; nil when every host is verified or local.
//
// sslmode is the URL's, else PGSSLMODE, else pgx's default "prefer"
// (pgconn.ParseConfig reads PGSSLMODE like libpq). Of the libpq modes
// (https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION),
// disable, allow and prefer may send everything in clear, and require
// encrypts without checking who answers (with sslrootcert it checks the
// chain but not the name, as verify-ca). Only verify-full (or
// sslrootcert=system, which pgx turns into verify-full) checks both.
// Unix sockets and loopback hosts are not warned about: pgx skips TLS on a
// socket (pgconn.ParseConfig, "Ignore TLS settings if Unix domain socket").
func UnverifiedPostgres(url string) (hosts []string, sslmode string) {
	// The query alone: net/url cannot parse a multi-host URL
	// (h1,h2:5433), which pgconn splits itself.
	_, rawQuery, _ := strings.Cut(url, "?")
	q, err := neturl.ParseQuery(rawQuery)
	if err != nil {
		return nil, "" // ConnectPostgres reports the bad URL
	}
	sslmode = q.Get("sslmode")
	if sslmode == "" {
		sslmode = os.Getenv("PGSSLMODE")
	}
	switch {
	case q.Get("sslrootcert") == "system", sslmode == "verify-full", sslmode == "verify-ca":
		// verify-ca checks the chain but not the host name: an explicit
		// choice, not warned about (docs/tls-auth.md recommends verify-full).
		return nil, ""
	}
	if sslmode == "" {
		sslmode = "prefer (the default)"
	}
	pc, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, ""
	}
	all := []string{pc.Host}
	for _, fb := range pc.Fallbacks {
		all = append(all, fb.Host)
	}
	for _, h := range all {
		if network, _ := pgconn.NetworkAddress(h, 5432); network == "unix" || config.IsLoopbackHost(h) || slices.Contains(hosts, h) {
			continue
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return nil, ""
	}
	return hosts, sslmode
}

// warnUnverifiedPostgres logs once, at start, that the target would be
// reached without verifying its certificate.
func warnUnverifiedPostgres(log *zap.Logger, url string) {
	if hosts, mode := UnverifiedPostgres(url); hosts != nil {
		log.Warn("postgres.url does not verify the server's certificate: use sslmode=verify-full with sslrootcert (docs/tls-auth.md)",
			zap.Strings("hosts", hosts), zap.String("sslmode", mode))
	}
}

// permanentPostgresError reports whether a failed connection attempt will
// fail the same way when retried: the server's certificate did not verify
// (x509 errors, inside tls.CertificateVerificationError for verify-full;
// returned directly by pgx's verify-ca callback), or the server refused
// the client's identity (SQLSTATE class 28, invalid authorization: no
// pg_hba.conf entry, a missing or wrong client certificate, a wrong
// password; https://www.postgresql.org/docs/current/errcodes-appendix.html).
func permanentPostgresError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		hostname x509.HostnameError
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		pgErr    *pgconn.PgError
	)
	if errors.As(err, &pgErr) {
		return pgErr.Code == "28000" || pgErr.Code == "28P01"
	}
	return errors.As(err, &verify) || errors.As(err, &hostname) || errors.As(err, &unknown) || errors.As(err, &invalid)
}
