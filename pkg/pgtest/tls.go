package pgtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
)

// TLS is the server side of a cluster that requires TLS with client
// certificates (Options.TLS). The files are PEM, made by the test (for
// example with crypto/x509); Start copies them into the cluster's
// temporary directory, readable only by the server's user as PostgreSQL
// requires of the key.
//
// The server runs with ssl=on, ssl_cert_file, ssl_key_file and ssl_ca_file
// (https://www.postgresql.org/docs/current/ssl-tcp.html), and a
// pg_hba.conf of
//
//	local    all all                trust
//	hostssl  all all 127.0.0.1/32   trust clientcert=verify-full
//	hostssl  all all ::1/128        trust clientcert=verify-full
//
// so a TCP connection needs TLS and a client certificate that chains to
// CAFile and whose common name is the role it logs in as
// (https://www.postgresql.org/docs/current/auth-pg-hba-conf.html,
// clientcert=verify-full). Plain TCP has no pg_hba.conf entry and is
// refused. The harness itself (AdminURL, DatabaseURL, NewDatabase)
// connects over the unix socket; tests connect over TCP with TCPURL.
type TLS struct {
	// CertFile is the server's certificate chain. Required.
	CertFile string
	// KeyFile is the server certificate's private key. Required.
	KeyFile string
	// CAFile holds the CAs client certificates must chain to. Required.
	CAFile string
}

func (t *TLS) validate() error {
	if t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" {
		return errors.New("pgtest: Options.TLS needs CertFile, KeyFile and CAFile")
	}
	return nil
}

// hbaTLS is pg_hba.conf of a TLS cluster (see TLS).
const hbaTLS = `# pgtest: TLS with client certificates on TCP, trust on the unix socket.
local    all all                trust
hostssl  all all 127.0.0.1/32   trust clientcert=verify-full
hostssl  all all ::1/128        trust clientcert=verify-full
`

// tlsDir is where the server's copies of the TLS files live.
func (c *Cluster) tlsDir() string { return filepath.Join(c.tmpDir, "tls") }

// installTLS copies the TLS files for the server's user and writes
// pg_hba.conf; it does nothing without Options.TLS.
func (c *Cluster) installTLS() error {
	t := c.opts.TLS
	if t == nil {
		return nil
	}
	dir := c.tlsDir()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("pgtest: tls dir: %w", err)
	}
	if err := c.giveToServer(dir); err != nil {
		return err
	}
	for _, f := range []struct{ src, name string }{
		{t.CertFile, "server.crt"}, {t.KeyFile, "server.key"}, {t.CAFile, "ca.crt"},
	} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("pgtest: Options.TLS: %w", err)
		}
		dst := filepath.Join(dir, f.name)
		// The key must disallow access to group and world, or the server
		// refuses to start ("the permissions on server.key must disallow
		// any access to world or group", docs ssl-tcp.html, 18.9.3).
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return fmt.Errorf("pgtest: copy %s: %w", f.src, err)
		}
		if err := c.giveToServer(dst); err != nil {
			return err
		}
	}
	hba := filepath.Join(c.dataDir, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte(hbaTLS), 0o600); err != nil {
		return fmt.Errorf("pgtest: write pg_hba.conf: %w", err)
	}
	return c.giveToServer(hba)
}

// giveToServer hands path to the user that runs postgres (when the tests
// run as root).
func (c *Cluster) giveToServer(path string) error {
	if c.as == nil {
		return nil
	}
	if err := os.Chown(path, int(c.as.uid), int(c.as.gid)); err != nil {
		return fmt.Errorf("pgtest: hand %s to user %s: %w", path, c.as.name, err)
	}
	return nil
}

// tlsSettings are the server settings of a TLS cluster; none without
// Options.TLS.
func (c *Cluster) tlsSettings() [][2]string {
	if c.opts.TLS == nil {
		return nil
	}
	dir := c.tlsDir()
	return [][2]string{
		{"ssl", "on"},
		{"ssl_cert_file", filepath.Join(dir, "server.crt")},
		{"ssl_key_file", filepath.Join(dir, "server.key")},
		{"ssl_ca_file", filepath.Join(dir, "ca.crt")},
	}
}

// Port is the TCP port a managed cluster listens on (0 for an external
// one).
func (c *Cluster) Port() int { return c.port }

// TCPURL is the URL of database on a managed cluster over TCP at host
// (for example "localhost" or "127.0.0.1": the name the client checks the
// server's certificate against with sslmode=verify-full), as the admin
// role, with params as its query (sslmode, sslrootcert, sslcert, sslkey).
func (c *Cluster) TCPURL(database, host string, params url.Values) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort(host, strconv.Itoa(c.port)),
		Path:     "/" + database,
		RawQuery: params.Encode(),
	}
	return u.String()
}
