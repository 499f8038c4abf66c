package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/config"
)

// secret is a distinctive value no error message may contain.
const secret = "Sup3r-S3cret-7f1d"

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecretFiles: every *_file key reads its secret from the file named
// (one trailing newline dropped); every way the file can be wrong is an
// error naming the _file key and the path, never the content.
func TestSecretFiles(t *testing.T) {
	for _, sf := range config.SecretFiles() {
		t.Run(sf.FileKey, func(t *testing.T) {
			fileVar, valueVar := envName(sf.FileKey), envName(sf.Key)
			t.Run("read", func(t *testing.T) {
				for _, content := range []string{secret, secret + "\n", secret + "\r\n"} {
					cfg, err := config.Load("", env(fileVar+"="+secretFile(t, content)))
					if err != nil {
						t.Fatalf("Load: %v", err)
					}
					if got := valueOf(t, cfg, sf.Key); got != secret {
						t.Fatalf("%s = %q from a file holding %q", sf.Key, got, content)
					}
				}
			})
			big := strings.Repeat("x", 64<<10+1)
			for _, tc := range []struct {
				name    string
				environ []string
				want    string // in the message besides the key
			}{
				{"missing file", []string{fileVar + "=/nonexistent/secret"}, "/nonexistent/secret"},
				{"directory", []string{fileVar + "=" + t.TempDir()}, ""},
				{"empty file", []string{fileVar + "=" + secretFile(t, "\n")}, "empty"},
				{"two lines", []string{fileVar + "=" + secretFile(t, secret+"\n"+secret+"\n")}, "more than one line"},
				{"too large", []string{fileVar + "=" + secretFile(t, secret+big)}, "larger than"},
				{"value and file", []string{valueVar + "=" + secret, fileVar + "=" + secretFile(t, secret)}, sf.Key},
			} {
				t.Run(tc.name, func(t *testing.T) {
					_, err := config.Load("", env(tc.environ...))
					var ve config.ValidationError
					if !errors.As(err, &ve) || ve[0].Field != sf.FileKey {
						t.Fatalf("Load: %v; want a ValidationError on %s", err, sf.FileKey)
					}
					if !strings.Contains(err.Error(), tc.want) {
						t.Errorf("error %q does not say %q", err, tc.want)
					}
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q prints the secret", err)
					}
				})
			}
			t.Run("value cleared, file set", func(t *testing.T) {
				cfg, err := config.Load("", env(valueVar+"=", fileVar+"="+secretFile(t, secret)))
				if err != nil || valueOf(t, cfg, sf.Key) != secret {
					t.Fatalf("Load: %v, %s = %q", err, sf.Key, valueOf(t, cfg, sf.Key))
				}
			})
		})
	}
	t.Run("file in YAML", func(t *testing.T) {
		path := writeYAML(t, "postgres:\n  url_file: "+secretFile(t, "postgres://cdc:"+secret+"@db/x\n")+"\n")
		cfg, err := config.Load(path, noEnv)
		if err != nil || cfg.Postgres.URL != "postgres://cdc:"+secret+"@db/x" {
			t.Fatalf("Load: %v, postgres.url = %q", err, cfg.Postgres.URL)
		}
	})
}

// valueOf is the string field a dotted key names.
func valueOf(t *testing.T, cfg config.Config, key string) string {
	t.Helper()
	switch key {
	case "mongo.uri":
		return cfg.Mongo.URI
	case "postgres.url":
		return cfg.Postgres.URL
	case "nats.url":
		return cfg.NATS.URL
	case "nats.auth.password":
		return cfg.NATS.Auth.Password
	case "nats.auth.token":
		return cfg.NATS.Auth.Token
	}
	t.Fatalf("valueOf: no field for %s; extend this test", key)
	return ""
}

// TestValidateNATSAuth: credential kinds, TLS files, and the embedded
// server's rule: beyond loopback it needs user/password or token.
func TestValidateNATSAuth(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "present")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	external := func(c *config.Config) { c.NATS.URL = "nats://n1:4222" }
	for _, tc := range []struct {
		name  string
		edit  func(c *config.Config)
		field string // "" is valid
	}{
		{"embedded on loopback without auth (default)", func(*config.Config) {}, ""},
		{"embedded on ::1 without auth", func(c *config.Config) { c.NATS.Embedded.Host = "::1" }, ""},
		{"embedded on localhost without auth", func(c *config.Config) { c.NATS.Embedded.Host = "localhost" }, ""},
		{"embedded on 0.0.0.0 without auth", func(c *config.Config) { c.NATS.Embedded.Host = "0.0.0.0" }, "nats.embedded.host"},
		{"embedded on a LAN address without auth", func(c *config.Config) { c.NATS.Embedded.Host = "10.0.0.7" }, "nats.embedded.host"},
		{"embedded on a host name without auth", func(c *config.Config) { c.NATS.Embedded.Host = "cdc-1.internal" }, "nats.embedded.host"},
		{"embedded on 0.0.0.0 with user and password", func(c *config.Config) {
			c.NATS.Embedded.Host = "0.0.0.0"
			c.NATS.Auth.User, c.NATS.Auth.Password = "cdc", secret
		}, ""},
		{"embedded on 0.0.0.0 with a token", func(c *config.Config) { c.NATS.Embedded.Host = "0.0.0.0"; c.NATS.Auth.Token = secret }, ""},
		{"embedded on loopback with auth", func(c *config.Config) { c.NATS.Auth.User, c.NATS.Auth.Password = "cdc", secret }, ""},
		{"embedded with a creds file", func(c *config.Config) { c.NATS.Embedded.Host = "0.0.0.0"; c.NATS.Auth.CredsFile = file }, "nats.auth"},
		{"embedded with an nkey", func(c *config.Config) { c.NATS.Auth.NKeySeedFile = file }, "nats.auth"},
		{"embedded with TLS", func(c *config.Config) { c.NATS.TLS.CAFile = file }, "nats.tls"},
		{"user without password", func(c *config.Config) { external(c); c.NATS.Auth.User = "cdc" }, "nats.auth.password"},
		{"password without user", func(c *config.Config) { external(c); c.NATS.Auth.Password = secret }, "nats.auth.user"},
		{"token and creds", func(c *config.Config) { external(c); c.NATS.Auth.Token = secret; c.NATS.Auth.CredsFile = file }, "nats.auth"},
		{"external with a creds file", func(c *config.Config) { external(c); c.NATS.Auth.CredsFile = file }, ""},
		{"external with an nkey", func(c *config.Config) { external(c); c.NATS.Auth.NKeySeedFile = file }, ""},
		{"missing creds file", func(c *config.Config) { external(c); c.NATS.Auth.CredsFile = missing }, "nats.auth.creds_file"},
		{"missing nkey seed file", func(c *config.Config) { external(c); c.NATS.Auth.NKeySeedFile = missing }, "nats.auth.nkey_seed_file"},
		{"full TLS", func(c *config.Config) {
			external(c)
			c.NATS.TLS = config.NATSTLSConfig{CAFile: file, CertFile: file, KeyFile: file, ServerName: "nats.internal"}
		}, ""},
		{"missing CA file", func(c *config.Config) { external(c); c.NATS.TLS.CAFile = missing }, "nats.tls.ca_file"},
		{"certificate without key", func(c *config.Config) { external(c); c.NATS.TLS.CertFile = file }, "nats.tls.cert_file"},
		{"missing key file", func(c *config.Config) { external(c); c.NATS.TLS.CertFile, c.NATS.TLS.KeyFile = file, missing }, "nats.tls.key_file"},
		{"CA file is a directory", func(c *config.Config) { external(c); c.NATS.TLS.CAFile = dir }, "nats.tls.ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.edit(&c)
			err := c.Validate(config.RoleAll)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate: %v; want a ValidationError naming %s", err, tc.field)
			}
			var fields []string
			for _, fe := range ve {
				fields = append(fields, fe.Field)
			}
			found := false
			for _, f := range fields {
				found = found || f == tc.field
			}
			if !found {
				t.Fatalf("fields %v do not include %s (%v)", fields, tc.field, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q prints the secret", err)
			}
		})
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.1.2.3": true, "::1": true, "[::1]": true, "localhost": true, "LOCALHOST": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.1": false, "db.internal": false, "localhost.example": false,
	} {
		if got := config.IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
