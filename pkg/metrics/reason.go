package metrics

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/auth"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// ReasonError is an error whose text is safe to show on /readyz as it is:
// it names no user, database or host. A check returns one (Reason) when it
// knows better than Ready's classification what to say.
type ReasonError struct{ Text string }

func (e *ReasonError) Error() string { return e.Text }

// Reason returns a ReasonError with text.
func Reason(text string) error { return &ReasonError{Text: text} }

// reasonClass is what /readyz says of a failed check: the class of the
// failure, never the error's text. /readyz answers whoever reaches the
// port (a load balancer, a probe, anyone on the network when http.addr is
// not loopback) and drivers' errors name the connection's user, database
// and hosts: pgconn's "failed to connect to `user=… database=…`: host:port",
// the Mongo driver's "server selection error: … current topology: { …
// Addr: host:port … }". The full error goes to the log instead (Health
// logs each new failure). Classes are decided by error type and code
// (pgconn.PgError's SQLSTATE, syscall errnos, the drivers' types), never
// by message text.
func reasonClass(err error) string {
	var re *ReasonError
	if errors.As(err, &re) {
		return re.Text
	}
	// The Mongo driver reports an unreachable replica set as a server
	// selection that timed out; why each server failed is in the
	// topology's description (description.Server.LastError), outside the
	// wrap chain: x/mongo/driver/topology/errors.go ServerSelectionError
	// (mongo-go-driver v1.17). Classify the first server's error, so an
	// outage reads "connection refused" rather than "timeout".
	var sel topology.ServerSelectionError
	if errors.As(err, &sel) {
		for _, s := range sel.Desc.Servers {
			if s.LastError != nil {
				if c := errorClass(s.LastError); c != "" {
					return c
				}
			}
		}
	}
	if c := errorClass(err); c != "" {
		return c
	}
	return "error (the full error is in the log)"
}

// errorClass classifies err by type, or returns "" when no class fits.
func errorClass(err error) string {
	var (
		pgErr   *pgconn.PgError
		authErr *auth.Error
		dnsErr  *net.DNSError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		verify  *tls.CertificateVerificationError
		alert   tls.AlertError
		record  tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &pgErr):
		// SQLSTATE class 28 is "invalid authorization specification"
		// (28000, 28P01 invalid_password): PostgreSQL documentation,
		// Appendix A "PostgreSQL Error Codes".
		if len(pgErr.Code) == 5 && pgErr.Code[:2] == "28" {
			return "authentication failed (SQLSTATE " + pgErr.Code + ")"
		}
		return "server error (SQLSTATE " + pgErr.Code + ")"
	case errors.As(err, &authErr):
		return "authentication failed"
	case errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid), errors.As(err, &verify):
		return "TLS certificate rejected"
	case errors.As(err, &alert), errors.As(err, &record):
		return "TLS handshake failed"
	case errors.As(err, &dnsErr):
		return "name resolution failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection closed"
	case errors.Is(err, context.DeadlineExceeded), mongo.IsTimeout(err):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return ""
}
