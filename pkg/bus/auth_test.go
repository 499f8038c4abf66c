package bus_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
)

func writeFile(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// newUser makes an NKey user and returns its key pair and seed file.
func newUser(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp := must[nkeys.KeyPair](t)(nkeys.CreateUser())
	seed := must[[]byte](t)(kp.Seed())
	return kp, writeFile(t, "user.nk", seed)
}

// TestConnectNKey: a server that knows the user's public NKey accepts
// the seed's signature (nats_server nkeys: authorization { users: [{nkey: U...}] });
// another user's seed is an authorization violation that ends start-up at
// once.
func TestConnectNKey(t *testing.T) {
	kp, seedFile := newUser(t)
	_, strangerSeed := newUser(t)
	pub := must[string](t)(kp.PublicKey())
	srv := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	url := srv.ClientURL()

	nc, err := connect(t, config.NATSConfig{URL: url, Auth: config.NATSAuthConfig{NKeySeedFile: seedFile}})
	if err != nil {
		t.Fatalf("connect with the user's seed: %v", err)
	}
	roundTrip(t, nc)

	for name, n := range map[string]config.NATSConfig{
		"another user's seed": {URL: url, Auth: config.NATSAuthConfig{NKeySeedFile: strangerSeed}},
		"no credential":       {URL: url},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := connect(t, n)
			if msg := wantIs(nats.ErrAuthorization)(err); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}

// operator is a decentralized-auth (JWT) setup: an operator, one account
// (preloaded into the server's resolver, as resolver_preload does) and
// users signed by that account.
type operator struct {
	claims  *jwt.OperatorClaims
	account nkeys.KeyPair
	pub     string
	jwt     string
}

func newOperator(t *testing.T) *operator {
	t.Helper()
	okp := must[nkeys.KeyPair](t)(nkeys.CreateOperator())
	opub := must[string](t)(okp.PublicKey())
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "cdc-test"
	ojwt := must[string](t)(oc.Encode(okp))
	claims := must[*jwt.OperatorClaims](t)(jwt.DecodeOperatorClaims(ojwt))

	akp := must[nkeys.KeyPair](t)(nkeys.CreateAccount())
	apub := must[string](t)(akp.PublicKey())
	ac := jwt.NewAccountClaims(apub)
	ac.Name = "CDC"
	ajwt := must[string](t)(ac.Encode(okp))
	return &operator{claims: claims, account: akp, pub: apub, jwt: ajwt}
}

// server runs a nats-server trusting the operator, with the account
// preloaded in a memory resolver.
func (o *operator) server(t *testing.T) *server.Server {
	t.Helper()
	res := &server.MemAccResolver{}
	if err := res.Store(o.pub, o.jwt); err != nil {
		t.Fatal(err)
	}
	return startServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{o.claims}, AccountResolver: res})
}

// creds writes a creds file (user JWT and seed, nsc's format) for a new
// user signed by signer.
func creds(t *testing.T, signer nkeys.KeyPair) string {
	t.Helper()
	ukp := must[nkeys.KeyPair](t)(nkeys.CreateUser())
	upub := must[string](t)(ukp.PublicKey())
	uc := jwt.NewUserClaims(upub)
	uc.Name = "cdc"
	ujwt := must[string](t)(uc.Encode(signer))
	seed := must[[]byte](t)(ukp.Seed())
	return writeFile(t, "cdc.creds", must[[]byte](t)(jwt.FormatUserConfig(ujwt, seed)))
}

// TestConnectCredsFile: the replicator connects to a server in operator
// mode with a creds file; a user signed by an account the server does not
// know is refused at once; a file that holds no JWT is a configuration
// error naming the key.
func TestConnectCredsFile(t *testing.T) {
	op := newOperator(t)
	srv := op.server(t)
	url := srv.ClientURL()

	nc, err := connect(t, config.NATSConfig{URL: url, Auth: config.NATSAuthConfig{CredsFile: creds(t, op.account)}})
	if err != nil {
		t.Fatalf("connect with the creds file: %v", err)
	}
	roundTrip(t, nc)

	t.Run("user of an unknown account", func(t *testing.T) {
		stranger := must[nkeys.KeyPair](t)(nkeys.CreateAccount())
		_, err := connect(t, config.NATSConfig{URL: url, Auth: config.NATSAuthConfig{CredsFile: creds(t, stranger)}})
		if msg := wantIs(nats.ErrAuthorization)(err); msg != "" {
			t.Fatal(msg)
		}
	})
	t.Run("not a creds file", func(t *testing.T) {
		_, err := bus.ClientOptions(config.NATSConfig{URL: url, Auth: config.NATSAuthConfig{CredsFile: writeFile(t, "x.creds", []byte("hello\n"))}})
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Field != "nats.auth.creds_file" {
			t.Fatalf("ClientOptions: %v; want a FieldError for nats.auth.creds_file", err)
		}
	})
}

// TestClientOptionsFileErrors: unusable key material is a configuration
// error naming its key, before any connection attempt.
func TestClientOptionsFileErrors(t *testing.T) {
	junk := func(t *testing.T) string { return writeFile(t, "junk.pem", []byte("not pem\n")) }
	for _, tc := range []struct {
		name  string
		n     func(t *testing.T) config.NATSConfig
		field string
	}{
		{"CA file", func(t *testing.T) config.NATSConfig {
			return config.NATSConfig{TLS: config.NATSTLSConfig{CAFile: junk(t)}}
		}, "nats.tls.ca_file"},
		{"client certificate", func(t *testing.T) config.NATSConfig {
			return config.NATSConfig{TLS: config.NATSTLSConfig{CertFile: junk(t), KeyFile: junk(t)}}
		}, "nats.tls.cert_file"},
		{"NKey seed", func(t *testing.T) config.NATSConfig {
			return config.NATSConfig{Auth: config.NATSAuthConfig{NKeySeedFile: junk(t)}}
		}, "nats.auth.nkey_seed_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bus.ClientOptions(tc.n(t))
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("ClientOptions: %v; want a FieldError for %s", err, tc.field)
			}
			if msg := fmt.Sprint(err); len(msg) == 0 || strings.Contains(msg, "not pem") {
				t.Fatalf("error %q quotes the file's content", msg)
			}
		})
	}
}
