package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/amanat/cdc/pkg/config"
)

// ClientOptions are the nats.go options that authenticate this process
// with n.Auth and verify the server as n.TLS says. Pass them to Connect.
// The credential kinds map to nats.go as documented in its Options
// (https://pkg.go.dev/github.com/nats-io/nats.go#Option):
//
//	user/password   nats.UserInfo
//	token           nats.Token
//	nkey_seed_file  nats.NkeyOptionFromSeed (signs the server's nonce)
//	creds_file      nats.UserCredentials (user JWT + seed, re-read on
//	                every connect, so a rotated file needs no restart)
//
// TLS: nats.Secure with MinVersion TLS 1.2 and ServerName (empty: nats.go
// uses the URL's host, nats.go makeTLSConn), nats.RootCAs for the CA file
// and nats.ClientCert for the client certificate; both re-read their
// files on every connect. Server verification is never skipped.
//
// n is a validated configuration (config.Validate checks the kinds and
// that the files are readable); an error here names the key and means a
// file did not parse.
func ClientOptions(n config.NATSConfig) ([]nats.Option, error) {
	var opts []nats.Option
	a := n.Auth
	switch {
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	case a.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, &config.FieldError{Field: "nats.auth.nkey_seed_file", Reason: fmt.Sprintf("not a usable NKey user seed: %v", err)}
		}
		opts = append(opts, o)
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	// Each option is applied once now: a CA or certificate file that does
	// not parse is a configuration error naming its key, not an outage to
	// retry at every connect.
	probe := nats.GetDefaultOptions()
	addTLS := func(key string, o nats.Option) error {
		if err := o(&probe); err != nil {
			return &config.FieldError{Field: key, Reason: err.Error()}
		}
		opts = append(opts, o)
		return nil
	}
	if t := n.TLS; t.Enabled() {
		// Secure first: RootCAs and ClientCert only create a tls.Config
		// when there is none, so this one's ServerName is kept.
		if err := addTLS("nats.tls", nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName})); err != nil {
			return nil, err
		}
		if t.CAFile != "" {
			if err := addTLS("nats.tls.ca_file", nats.RootCAs(t.CAFile)); err != nil {
				return nil, err
			}
		}
		if t.CertFile != "" {
			if err := addTLS("nats.tls.cert_file", nats.ClientCert(t.CertFile, t.KeyFile)); err != nil {
				return nil, err
			}
		}
	}
	if a.CredsFile != "" {
		if err := nats.UserCredentials(a.CredsFile)(&probe); err != nil {
			return nil, &config.FieldError{Field: "nats.auth.creds_file", Reason: err.Error()}
		}
		// nats.go's parser returns undecorated content as it is, so check
		// the JWT's shape (header.payload.signature) and that a seed signs.
		if j, err := probe.UserJWT(); err != nil || strings.Count(j, ".") != 2 {
			return nil, &config.FieldError{Field: "nats.auth.creds_file", Reason: fmt.Sprintf("no user JWT in %s (want nsc's creds format)", a.CredsFile)}
		}
		if _, err := probe.SignatureCB([]byte("probe")); err != nil {
			return nil, &config.FieldError{Field: "nats.auth.creds_file", Reason: fmt.Sprintf("no usable NKey seed in %s: %v", a.CredsFile, err)}
		}
	}
	return opts, nil
}

// EmbeddedAuthFromConfig is the credential the embedded server requires:
// nats.auth's user/password or token (the process presents the same one
// through ClientOptions).
func EmbeddedAuthFromConfig(n config.NATSConfig) EmbeddedAuth {
	return EmbeddedAuth{User: n.Auth.User, Password: n.Auth.Password, Token: n.Auth.Token}
}

// PermanentConnectError reports whether a failed connection attempt will
// fail the same way when retried, so that start-up stops at once rather
// than retrying until its deadline: the server refused the credential
// (nats.ErrAuthorization and the expired/revoked variants, matched with
// errors.Is as nats.go returns them from checkAuthError), the server's
// certificate did not verify (x509 errors inside tls.CertificateVerificationError,
// wrapped by nats.go as ErrTLS), or client and server disagree on TLS
// (nats.ErrSecureConnRequired / ErrSecureConnWanted).
func PermanentConnectError(err error) bool {
	for _, target := range []error{
		nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired,
		nats.ErrSecureConnRequired, nats.ErrSecureConnWanted,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var (
		verify   *tls.CertificateVerificationError
		hostname x509.HostnameError
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &hostname) || errors.As(err, &unknown) || errors.As(err, &invalid)
}
