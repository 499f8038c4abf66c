package status

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/dial"
	"github.com/amanat/cdc/pkg/redact"
)

// DefaultTimeout bounds each connection attempt and each read when
// Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Options tune Open and Collect.
type Options struct {
	// Timeout bounds each connection attempt and each read. Default
	// DefaultTimeout.
	Timeout time.Duration
	// Counts turns on the per-collection counts (a count(*) per table
	// and a countDocuments per collection: slow on large data).
	Counts bool
	// MaxLag makes lag.seconds above it a problem; 0 never does.
	MaxLag time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Sources are the connections a report reads from. A system that could
// not be reached has its error in NATS, Postgres or Mongo and a nil
// connection. Create with Open; Close releases everything (and stops a
// temporary embedded server).
type Sources struct {
	NATS     NATSStatus
	Postgres System
	Mongo    System

	nc    *nats.Conn
	js    jetstream.JetStream
	emb   *bus.Embedded
	pg    *pgxpool.Pool
	mongo *mongo.Client
}

// Open connects to the three systems of cfg concurrently, each within
// opts.Timeout. It never fails as a whole: an unreachable system is
// recorded in Sources and the others are still opened. See the package
// documentation for how the embedded server's state is reached.
func Open(ctx context.Context, cfg *config.Config, opts Options) *Sources {
	s := &Sources{}
	var wg sync.WaitGroup
	wg.Go(func() { s.openNATS(ctx, cfg, opts.timeout()) })
	wg.Go(func() { s.openPostgres(ctx, cfg.Postgres.URL, opts.timeout()) })
	wg.Go(func() { s.openMongo(ctx, cfg.Mongo.URI, opts.timeout()) })
	wg.Wait()
	return s
}

// Close closes the connections and shuts a temporary embedded server
// down. ctx bounds the MongoDB disconnect.
func (s *Sources) Close(ctx context.Context) {
	if s.nc != nil {
		s.nc.Close()
	}
	if s.emb != nil {
		s.emb.Shutdown()
	}
	if s.pg != nil {
		s.pg.Close()
	}
	if s.mongo != nil {
		_ = s.mongo.Disconnect(ctx)
	}
}

func (s *Sources) openPostgres(ctx context.Context, url string, timeout time.Duration) {
	s.Postgres.Address = redact.URL(url)
	if url == "" {
		s.Postgres.Error = "postgres.url is not set"
		return
	}
	// Status only reads.
	pool, err := dial.Postgres(ctx, url, dial.PostgresOptions{AppName: "cdc-status", MaxConns: 2, Timeout: timeout,
		ConnectTimeout: timeout, ReadOnly: true})
	if err != nil {
		s.Postgres.Error = connectFailure(err, "postgres.url", url)
		return
	}
	s.pg, s.Postgres.Reachable = pool, true
}

func (s *Sources) openMongo(ctx context.Context, uri string, timeout time.Duration) {
	s.Mongo.Address = redact.URL(uri)
	if uri == "" {
		s.Mongo.Error = "mongo.uri is not set"
		return
	}
	client, err := dial.Mongo(ctx, uri, dial.MongoOptions{AppName: "cdc-status", Timeout: timeout, DriverTimeout: timeout})
	if err != nil {
		s.Mongo.Error = connectFailure(err, "mongo.uri", uri)
		return
	}
	s.mongo, s.Mongo.Reachable = client, true
}

// connectFailure is a system's line for a failed dial: "bad <key>: " when
// the connection string is unusable, else "unreachable: ", then the
// driver's reason on one line without conn's credentials.
func connectFailure(err error, key, conn string) string {
	prefix, cause := "unreachable: ", err
	var de *dial.Error
	if errors.As(err, &de) {
		cause = de.Err // scrubbed here, after oneLine
		if de.Stage == dial.StageParse {
			prefix = "bad " + key + ": "
		}
	}
	return prefix + scrub(oneLine(cause), conn)
}

func (s *Sources) openNATS(ctx context.Context, cfg *config.Config, timeout time.Duration) {
	if cfg.NATS.URL != "" {
		s.NATS.Mode = ModeExternal
		s.NATS.Address = redact.URL(cfg.NATS.URL)
		if err := s.connectNATS(cfg.NATS.URL, timeout, &cfg.NATS); err != nil {
			s.NATS.Mode = ""
			s.NATS.Error = "unreachable: " + scrub(oneLine(err), cfg.NATS.URL)
		}
		return
	}
	if err := s.openEmbedded(ctx, cfg, timeout); err != nil {
		s.NATS.Mode = ""
		s.NATS.Error = scrub(oneLine(err), cfg.NATS.URL)
	}
}

// scrub removes the credentials of connection string conn from msg (a
// driver may quote the string, or a fragment of it, in its error), and
// anything else redact recognises as a credential.
func scrub(msg, conn string) string { return redact.Scrub(msg, conn) }

// oneLine flattens a multi-line error (pgx lists every address tried on
// its own line) so each problem stays one line.
func oneLine(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return l == "" }), " ")
}

// openEmbedded reaches the embedded server's state: the daemon's server
// if it listens, else a temporary server on the store, but only when
// nothing suggests the daemon is running.
func (s *Sources) openEmbedded(ctx context.Context, cfg *config.Config, timeout time.Duration) error {
	dir := cfg.NATSStoreDir()
	s.NATS.StoreDir = dir
	port := cfg.NATS.Embedded.Port
	if port > 0 {
		addr := net.JoinHostPort(loopbackFor(cfg.NATS.Embedded.Host), strconv.Itoa(port))
		url := "nats://" + addr
		s.NATS.Address = redact.URL(url)
		switch listening, err := listens(ctx, addr, timeout); {
		case listening:
			if err := s.connectNATS(url, timeout, &cfg.NATS); err != nil {
				return fmt.Errorf("something listens on the daemon's embedded NATS address %s but NATS does not answer: %v "+
					"(not opening the store %s while it may be in use)", addr, err, dir)
			}
			s.NATS.Mode = ModeDaemon
			return nil
		case err != nil:
			return fmt.Errorf("cannot tell whether the daemon's embedded NATS at %s is up: %v (not opening the store %s while it may be in use)", addr, err, dir)
		}
	}
	httpAddr, probeable := httpProbeAddr(cfg.HTTP.Addr)
	if probeable {
		switch up, err := httpAnswers(ctx, httpAddr, timeout); {
		case up:
			return fmt.Errorf("the daemon answers on http.addr %s, but its embedded NATS is not reachable at nats.embedded.host:port (%s:%d); "+
				"not opening the store %s while the daemon uses it", httpAddr, cfg.NATS.Embedded.Host, port, dir)
		case err != nil:
			return fmt.Errorf("cannot tell whether the daemon is up (http.addr %s: %v); not opening the store %s while it may be in use", httpAddr, err, dir)
		}
	}
	if port <= 0 && !probeable {
		return fmt.Errorf("cannot tell whether a daemon uses the store %s: nats.embedded.port is %d (a random port) and http.addr gives no fixed address to probe; "+
			"set a fixed nats.embedded.port so status can find the daemon", dir, port)
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		return fmt.Errorf("the daemon is not running and there is no JetStream store at %s (%v); has the daemon run with this configuration (data_dir, nats.embedded.store_dir)?", dir, err)
	}
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Host: "127.0.0.1", Port: -1, StoreDir: dir}, nil)
	if err != nil {
		return fmt.Errorf("the daemon is not running and reading its store failed: %w", err)
	}
	s.emb = emb
	s.NATS.Address = redact.URL(emb.ClientURL())
	if err := s.connectNATS(emb.ClientURL(), timeout, nil); err != nil {
		return fmt.Errorf("temporary server on the store %s: %w", dir, err)
	}
	s.NATS.Mode = ModeStoredState
	return nil
}

// connectNATS connects to url with the configured credentials and TLS
// (auth, nil for the temporary server on the stored state, which has none).
func (s *Sources) connectNATS(url string, timeout time.Duration, auth *config.NATSConfig) error {
	opts := []nats.Option{nats.Name("cdc-status"), nats.Timeout(timeout), nats.NoReconnect()}
	if auth != nil {
		more, err := bus.ClientOptions(*auth)
		if err != nil {
			return err
		}
		opts = append(opts, more...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("nats connect %s: %w", redact.URL(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	s.nc, s.js, s.NATS.Reachable = nc, js, true
	return nil
}

// loopbackFor is the address to dial for a listen host: a wildcard
// listens on loopback too.
func loopbackFor(host string) string {
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		return "127.0.0.1"
	}
	return host
}

// listens reports whether a TCP connection to addr is accepted. A refused
// connection is (false, nil): nothing listens. Any other failure is
// (false, err): unknown.
func listens(ctx context.Context, addr string, timeout time.Duration) (bool, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		_ = c.Close()
		return true, nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false, nil
	}
	return false, err
}

// httpProbeAddr turns http.addr into a dialable host:port; false when it
// is empty or has no fixed port.
func httpProbeAddr(addr string) (string, bool) {
	if addr == "" {
		return "", false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" {
		return "", false
	}
	return net.JoinHostPort(loopbackFor(host), port), true
}

// httpAnswers reports whether anything answers HTTP on addr/healthz.
func httpAnswers(ctx context.Context, addr string, timeout time.Duration) (bool, error) {
	listening, err := listens(ctx, addr, timeout)
	if !listening || err != nil {
		return false, err
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(hctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// Something listens but does not speak HTTP: it may still be
		// the daemon, stuck. Do not take the risk.
		return false, err
	}
	_ = resp.Body.Close()
	return true, nil
}
