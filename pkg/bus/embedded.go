package bus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/config"
)

// EmbeddedConfig configures the in-process JetStream server.
type EmbeddedConfig struct {
	// Host to listen on (default 127.0.0.1). Any other than loopback
	// requires Auth: StartEmbedded refuses with ErrEmbeddedNeedsAuth.
	Host string
	// Port to listen on; -1 picks a free port.
	Port int
	// StoreDir is the JetStream file store directory. Required.
	StoreDir string
	// SyncAlways fsyncs every write (sync_interval: always). Slower; the
	// default relies on the server's periodic sync plus replication.
	SyncAlways bool
	// MaxPayload is the largest message the server accepts; 0 means
	// DefaultEmbeddedMaxPayload. Larger events travel through the large
	// object store (StoreLarge).
	MaxPayload int32
	// Auth is the credential every client must present; the zero value
	// lets any client in (loopback only).
	Auth EmbeddedAuth
}

// EmbeddedAuth is the single credential the embedded server requires:
// a user and password, or a token (nats-server's authorization block with
// user/password or token, https://docs.nats.io/running-a-nats-service/configuration/securing_nats/auth_intro).
// Clients present it with nats.UserInfo or nats.Token (ClientOptions).
type EmbeddedAuth struct {
	User, Password string
	Token          string
}

// Enabled reports whether a credential is set.
func (a EmbeddedAuth) Enabled() bool { return a.User != "" || a.Token != "" }

// ErrEmbeddedNeedsAuth means the embedded server was asked to listen
// beyond loopback without a credential: any host that reaches the port
// could then publish forged events, purge the stream or rewrite the
// checkpoint.
var ErrEmbeddedNeedsAuth = errors.New("embedded nats: a host other than loopback requires a credential " +
	"(set nats.auth.user with nats.auth.password_file, or nats.auth.token_file; or listen on 127.0.0.1)")

// DefaultEmbeddedMaxPayload is the embedded server's max_payload: a
// MongoDB document can be 16 MiB and an envelope carries it twice with a
// pre-image, so most events fit in one message; nats-server's own default
// (1 MiB) would send every document over ~1 MB through the object store.
const DefaultEmbeddedMaxPayload = 64 << 20

// Embedded is a running in-process nats-server with JetStream.
type Embedded struct {
	srv  *server.Server
	lock *os.File
}

// ErrStoreInUse means another process (or server) holds the store: two
// servers on one JetStream store would corrupt it.
var ErrStoreInUse = errors.New("JetStream store is in use by another server")

// lockStore takes an exclusive, non-blocking flock on <dir>/cdc.lock for
// the server's lifetime; the kernel drops it when the process dies, kill
// -9 included.
func lockStore(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded nats: store dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "cdc.lock"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (is the replicator running? point nats.url at it instead)", ErrStoreInUse, dir)
		}
		return nil, fmt.Errorf("embedded nats: lock %s: %w", dir, err)
	}
	return f, nil
}

// StartEmbedded starts the real nats-server in this process and waits until
// it accepts connections. The caller must Shutdown it.
func StartEmbedded(cfg EmbeddedConfig, log *zap.Logger) (*Embedded, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("embedded nats: store dir is required")
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	if err := checkEmbeddedAuth(host, cfg.Auth); err != nil {
		return nil, err
	}
	lock, err := lockStore(cfg.StoreDir)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: "cdc-embedded",
		Host:       host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		// JetStream's own limits: let the file store use the disk.
		JetStreamMaxStore:  -1,
		JetStreamMaxMemory: 256 << 20,
		MaxPayload:         DefaultEmbeddedMaxPayload,
	}
	if cfg.MaxPayload > 0 {
		opts.MaxPayload = cfg.MaxPayload
	}
	if cfg.SyncAlways {
		opts.SyncAlways = true
	}
	// One user (or token) in the global account, which has JetStream
	// enabled: nats-server's single-user authorization (server/auth.go:
	// configureAuthorization, then processClientOrLeafAuthentication
	// compares the CONNECT's user/pass or auth_token, comparePasswords).
	opts.Username, opts.Password, opts.Authorization = cfg.Auth.User, cfg.Auth.Password, cfg.Auth.Token
	srv, err := server.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if log != nil {
		srv.SetLoggerV2(&serverLogger{log.Named("nats-server").Sugar()}, false, false, false)
	}
	if log != nil && !config.IsLoopbackHost(host) {
		log.Warn("embedded NATS listens beyond loopback without TLS: its credential and the events cross the network unencrypted; "+
			"for more than one host use an external NATS cluster with TLS (docs/tls-auth.md)", zap.String("host", host))
	}
	srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("embedded nats: not ready within 15s (store %s)", cfg.StoreDir)
	}
	return &Embedded{srv: srv, lock: lock}, nil
}

// checkEmbeddedAuth refuses a server beyond loopback without a
// credential, and a half-set one.
func checkEmbeddedAuth(host string, a EmbeddedAuth) error {
	switch {
	case a.User != "" && a.Token != "":
		return fmt.Errorf("embedded nats: set a user/password or a token, not both")
	case (a.User == "") != (a.Password == ""):
		return fmt.Errorf("embedded nats: user and password go together")
	case !a.Enabled() && !config.IsLoopbackHost(host):
		return fmt.Errorf("%w: host %q", ErrEmbeddedNeedsAuth, host)
	}
	return nil
}

// ClientURL is the nats:// URL clients connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits until it has.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	if e.lock != nil {
		e.lock.Close() // releases the flock
		e.lock = nil
	}
}

// serverLogger adapts zap to nats-server's Logger.
type serverLogger struct{ s *zap.SugaredLogger }

func (l *serverLogger) Noticef(format string, v ...any) { l.s.Debugf(format, v...) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.s.Warnf(format, v...) }
func (l *serverLogger) Fatalf(format string, v ...any)  { l.s.Errorf(format, v...) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.s.Errorf(format, v...) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.s.Debugf(format, v...) }
func (l *serverLogger) Tracef(format string, v ...any)  {}
