package config

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// Secrets from files. Every secret-bearing key X has a sibling key X_file
// that names a file holding the value (a Kubernetes or Docker secret
// mount). Being ordinary keys, they have the ordinary environment
// variables too: CDC_POSTGRES__URL_FILE, CDC_MONGO__URI_FILE,
// CDC_NATS__URL_FILE, CDC_NATS__AUTH__PASSWORD_FILE,
// CDC_NATS__AUTH__TOKEN_FILE. Load reads the files; the content replaces
// X. Setting X and X_file at once is an error (clear one with an empty
// value, e.g. CDC_POSTGRES__URL=). A file that cannot be read, is empty,
// holds more than one line or more than maxSecretFile bytes is an error
// naming the X_file key and the path, never the content.

// maxSecretFile bounds a secret file: anything larger is the wrong file.
const maxSecretFile = 64 << 10

// SecretFile pairs a secret key with the key naming its file.
type SecretFile struct {
	// Key is the secret's key (postgres.url).
	Key string
	// FileKey is the key naming its file (postgres.url_file).
	FileKey string
}

type secretField struct {
	SecretFile
	value, file *string
}

func (c *Config) secretFields() []secretField {
	return []secretField{
		{SecretFile{"mongo.uri", "mongo.uri_file"}, &c.Mongo.URI, &c.Mongo.URIFile},
		{SecretFile{"postgres.url", "postgres.url_file"}, &c.Postgres.URL, &c.Postgres.URLFile},
		{SecretFile{"nats.url", "nats.url_file"}, &c.NATS.URL, &c.NATS.URLFile},
		{SecretFile{"nats.auth.password", "nats.auth.password_file"}, &c.NATS.Auth.Password, &c.NATS.Auth.PasswordFile},
		{SecretFile{"nats.auth.token", "nats.auth.token_file"}, &c.NATS.Auth.Token, &c.NATS.Auth.TokenFile},
	}
}

// SecretFiles lists the secret keys that may come from a file, and the
// keys naming those files.
func SecretFiles() []SecretFile {
	var c Config
	fields := c.secretFields()
	out := make([]SecretFile, len(fields))
	for i, f := range fields {
		out[i] = f.SecretFile
	}
	return out
}

// readSecretFiles replaces every secret whose _file key is set with the
// file's content (see above).
func (c *Config) readSecretFiles() error {
	var errs ValidationError
	for _, f := range c.secretFields() {
		if *f.file == "" {
			continue
		}
		if *f.value != "" {
			errs = append(errs, &FieldError{Field: f.FileKey, Reason: fmt.Sprintf(
				"%s is set as well; set only one of them (clear the other with an empty value)", f.Key)})
			continue
		}
		v, err := readSecretFile(*f.file)
		if err != nil {
			errs = append(errs, &FieldError{Field: f.FileKey, Reason: err.Error()})
			continue
		}
		*f.value = v
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// readSecretFile returns the file's single line without its line ending.
// Its errors never quote the content.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("cannot read the file %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("file %s is larger than %d bytes: not a secret value", path, maxSecretFile)
	}
	b = bytes.TrimRight(b, "\r\n")
	switch {
	case len(b) == 0:
		return "", fmt.Errorf("file %s is empty", path)
	case bytes.ContainsAny(b, "\r\n\x00"):
		return "", fmt.Errorf("file %s holds more than one line; it must hold the value alone", path)
	}
	return string(b), nil
}

// checkReadable is a FieldError reason when path cannot be opened for
// reading, "" otherwise. The content is not read here: the driver reads
// it when it connects (and again on reconnect, so a rotated file is
// picked up).
func checkReadable(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("cannot read the file: %v", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return fmt.Sprintf("%s is a directory, not a file", path)
	}
	return ""
}

// IsLoopbackHost reports whether a listen or connect host reaches only
// this machine: "localhost", an IPv4 address in 127.0.0.0/8 or ::1
// (brackets allowed). The empty host and wildcards (0.0.0.0, ::) listen
// on every interface and are not loopback; neither is any other name
// (its address is not known until it is resolved).
func IsLoopbackHost(host string) bool {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// validateNATSAuth checks nats.auth and nats.tls, and that an embedded
// server reachable beyond loopback requires a credential.
func (c *Config) validateNATSAuth() fieldErrors {
	var errs fieldErrors
	a, t := c.NATS.Auth, c.NATS.TLS
	embedded := c.NATS.URL == ""
	var kinds []string
	if a.User != "" || a.Password != "" {
		kinds = append(kinds, "user/password")
	}
	if a.Token != "" {
		kinds = append(kinds, "token")
	}
	if a.NKeySeedFile != "" {
		kinds = append(kinds, "nkey_seed_file")
	}
	if a.CredsFile != "" {
		kinds = append(kinds, "creds_file")
	}
	if len(kinds) > 1 {
		errs.add("nats.auth", "set one kind of credential, got %s", strings.Join(kinds, " and "))
	}
	switch {
	case a.User != "" && a.Password == "":
		errs.add("nats.auth.password", "is required with nats.auth.user (or set nats.auth.password_file)")
	case a.User == "" && a.Password != "":
		errs.add("nats.auth.user", "is required with nats.auth.password")
	}
	for _, f := range []struct{ key, path string }{
		{"nats.auth.nkey_seed_file", a.NKeySeedFile},
		{"nats.auth.creds_file", a.CredsFile},
		{"nats.tls.ca_file", t.CAFile},
		{"nats.tls.cert_file", t.CertFile},
		{"nats.tls.key_file", t.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		if reason := checkReadable(f.path); reason != "" {
			errs.add(f.key, "%s", reason)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs.add("nats.tls.cert_file", "nats.tls.cert_file and nats.tls.key_file go together: set both or neither")
	}
	if !embedded {
		return errs
	}
	if a.NKeySeedFile != "" || a.CredsFile != "" {
		errs.add("nats.auth", "the embedded server supports user/password and token only; nkey_seed_file and creds_file are for an external nats.url")
	}
	if t.Enabled() {
		errs.add("nats.tls", "applies to an external nats.url; the embedded server listens without TLS (use an external NATS cluster for TLS between hosts)")
	}
	// An empty host is the embedded server's default, 127.0.0.1.
	if host := c.NATS.Embedded.Host; host != "" && !IsLoopbackHost(host) && a.User == "" && a.Token == "" {
		errs.add("nats.embedded.host", "%q listens beyond loopback, so the embedded server must require a credential: "+
			"set nats.auth.user with nats.auth.password_file (or nats.auth.token_file), or listen on 127.0.0.1; "+
			"without one any host that reaches the port could forge events, purge the stream or rewrite the checkpoint", host)
	}
	return errs
}
