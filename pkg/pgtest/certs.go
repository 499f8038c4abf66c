package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made for one test, for TLS tests of
// PostgreSQL (Options.TLS) and of the other systems the replicator
// reaches. Its files live in a test temporary directory; keys are ECDSA
// P-256 (fast to make), PEM (PKCS #8), mode 0600.
type CA struct {
	// CertFile is the CA certificate (PEM): the file clients and servers
	// trust (sslrootcert, ssl_ca_file, nats tls.ca_file).
	CertFile string

	name string
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA named name. It fails the test on error.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("pgtest: create CA %s: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	ca := &CA{name: name, dir: tb.TempDir(), cert: cert, key: key}
	ca.CertFile = ca.write(tb, name+"-ca.crt", "CERTIFICATE", der)
	return ca
}

// Server issues a server certificate for hosts (DNS names or IP
// addresses, which become the subject alternative names a client checks)
// and returns its certificate and key files.
func (ca *CA) Server(tb testing.TB, name string, hosts ...string) (certFile, keyFile string) {
	tb.Helper()
	tmpl := ca.template(tb, name, x509.ExtKeyUsageServerAuth)
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tb, name, tmpl)
}

// Client issues a client certificate whose common name is cn (PostgreSQL
// with clientcert=verify-full requires it to be the role's name) and
// returns its certificate and key files.
func (ca *CA) Client(tb testing.TB, cn string) (certFile, keyFile string) {
	tb.Helper()
	return ca.issue(tb, cn, ca.template(tb, cn, x509.ExtKeyUsageClientAuth))
}

func (ca *CA) template(tb testing.TB, cn string, usage x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
}

func (ca *CA) issue(tb testing.TB, name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	tb.Helper()
	key := newKey(tb)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatalf("pgtest: issue %s: %v", name, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	base := ca.name + "-" + name
	return ca.write(tb, base+".crt", "CERTIFICATE", der), ca.write(tb, base+".key", "PRIVATE KEY", kder)
}

func (ca *CA) write(tb testing.TB, file, typ string, der []byte) string {
	tb.Helper()
	path := filepath.Join(ca.dir, file)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
