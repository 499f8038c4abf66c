// Package app wires the replicator's parts from configuration: the bus
// (embedded or external NATS), the tailer, the sink and their connections.
// cmd/cdc calls it through package cli; end-to-end tests call it directly.
package app

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/dial"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/metrics"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/oplog"
	"github.com/amanat/cdc/pkg/redact"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/tailer"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

// StartupTimeout bounds how long start-up waits for each system. A system
// unreachable at start-up is a loud, non-zero exit; one lost later is an
// outage the components ride out.
const StartupTimeout = 30 * time.Second

// Options are test seams; production passes the zero value.
type Options struct {
	// SinkHooks injects faults into the sink.
	SinkHooks *sink.Hooks
	// HTTPReady receives the bound address of the HTTP endpoint.
	HTTPReady func(net.Addr)
}

// CheckLanes checks cfg's sink.lanes against the replicated collections
// (config.CheckLanes) and the mappings' references: a child and its
// parent in different lanes, or both in a group split by document id,
// are applied in no fixed order relative to each other, so the reference
// must tolerate a parent that comes later (transform.Reference
// ToleratesOrder: policy wait or null). Otherwise the two collections
// belong in one unsplit lane, and the error says so.
func CheckLanes(cfg *config.Config, set *transform.Set, replicated []string) error {
	lanes, err := config.ParseLanes(cfg.Sink.Lanes)
	if err != nil {
		return &config.FieldError{Field: "sink.lanes", Reason: err.Error()}
	}
	if err := config.CheckLanes(lanes, replicated); err != nil {
		return err
	}
	if len(lanes) == 0 {
		return nil
	}
	group := map[string]config.LaneConfig{}
	for _, l := range lanes {
		for _, c := range l.Collections {
			group[c] = l
		}
	}
	var problems []string
	for _, r := range set.References() {
		from, ok1 := group[r.Collection]
		to, ok2 := group[r.Parent]
		if !ok1 || !ok2 || r.ToleratesOrder() {
			continue // a sub-document's id, or a parent kept elsewhere
		}
		switch {
		case from.Group != to.Group:
			problems = append(problems, fmt.Sprintf("%s.%s (collection %s, lane %s) references %s (lane %s) with policy %s: a parent in another lane may be applied after its child; put both in one lane, or use policy wait or null",
				r.Table, r.Column, r.Collection, from.Group, r.Parent, to.Group, r.Missing))
		case from.Parts > 1:
			problems = append(problems, fmt.Sprintf("%s.%s (collection %s) references %s with policy %s inside lane %s, which is split by document id (%d lanes): a parent may be applied after its child; do not split the lane, or use policy wait or null",
				r.Table, r.Column, r.Collection, r.Parent, r.Missing, from.Group, from.Parts))
		}
	}
	if len(problems) > 0 {
		return &config.FieldError{Field: "sink.lanes", Reason: strings.Join(problems, "; ")}
	}
	return nil
}

// Bus is a connected JetStream with its declarations made, and the
// embedded server when there is one.
type Bus struct {
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Embedded *bus.Embedded
	Streams  bus.StreamsConfig
}

// Close drains the connection and stops the embedded server.
func (b *Bus) Close() {
	if b.Conn != nil {
		_ = b.Conn.Drain()
		b.Conn.Close()
	}
	if b.Embedded != nil {
		b.Embedded.Shutdown()
	}
}

// OpenBus starts the embedded server if no URL is configured, connects and
// declares the streams.
func OpenBus(ctx context.Context, cfg *config.Config, name string, maxPending int, log *zap.Logger) (*Bus, error) {
	b := &Bus{Streams: bus.StreamsFromConfig(cfg)}
	clientOpts, err := bus.ClientOptions(cfg.NATS) // credentials and TLS (pkg/bus/auth.go)
	if err != nil {
		return nil, err
	}
	url := cfg.NATS.URL
	if url == "" {
		if err := os.MkdirAll(cfg.NATSStoreDir(), 0o750); err != nil {
			return nil, fmt.Errorf("nats store dir: %w", err)
		}
		emb, err := bus.StartEmbedded(bus.EmbeddedConfig{
			Host: cfg.NATS.Embedded.Host, Port: cfg.NATS.Embedded.Port, StoreDir: cfg.NATSStoreDir(),
			Auth: bus.EmbeddedAuthFromConfig(cfg.NATS),
		}, log)
		if err != nil {
			return nil, err
		}
		b.Embedded = emb
		url = emb.ClientURL()
		log.Info("embedded NATS JetStream started", zap.String("url", redact.URL(url)), zap.String("store", cfg.NATSStoreDir()))
	}
	cctx, cancel := context.WithTimeout(ctx, StartupTimeout)
	defer cancel()
	nc, js, err := bus.Connect(cctx, url, name, maxPending, log, clientOpts...)
	if err != nil {
		b.Close()
		if bus.PermanentConnectError(err) {
			return nil, redact.Error(fmt.Errorf("NATS refused this process at start-up (credential or certificate): %w", err), url)
		}
		return nil, redact.Error(fmt.Errorf("NATS unreachable at start-up: %w", err), url)
	}
	b.Conn, b.JS = nc, js
	if err := bus.Ensure(cctx, js, b.Streams); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// ConnectMongo connects and pings the primary within StartupTimeout
// (dial.Mongo, application name "cdc").
func ConnectMongo(ctx context.Context, uri string) (*mongo.Client, error) {
	client, err := dial.Mongo(ctx, uri, dial.MongoOptions{AppName: "cdc", Timeout: StartupTimeout})
	if err == nil {
		return client, nil
	}
	if dial.StageOf(err) == dial.StagePing {
		return nil, redact.Error(fmt.Errorf("MongoDB unreachable at start-up (%s): %w", redact.URL(uri), err), uri)
	}
	return nil, redact.Error(fmt.Errorf("mongo %s: %w", redact.URL(uri), err), uri)
}

// ConnectPostgres opens a pool and pings it within StartupTimeout
// (dial.Postgres, application name "cdc"), trying again while the failure
// may pass: a certificate or an identity refused now is refused again
// (permanentPostgresError, pgtls.go), and returns at once.
func ConnectPostgres(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	pool, err := dial.Postgres(ctx, url, dial.PostgresOptions{AppName: "cdc", MaxConns: maxConns, Timeout: StartupTimeout,
		RetryUnless: permanentPostgresError})
	if err == nil {
		return pool, nil
	}
	switch {
	case dial.StageOf(err) == dial.StageParse:
		return nil, redact.Error(fmt.Errorf("postgres url %s: %w", redact.URL(url), err), url)
	case dial.StageOf(err) == dial.StageOpen:
		return nil, redact.Error(fmt.Errorf("postgres %s: %w", redact.URL(url), err), url)
	case permanentPostgresError(err):
		return nil, redact.Error(fmt.Errorf("PostgreSQL refused the connection at start-up (%s): %w", redact.URL(url), err), url)
	}
	return nil, redact.Error(fmt.Errorf("PostgreSQL unreachable at start-up (%s): %w", redact.URL(url), err), url)
}

// Run runs the parts role names until ctx is cancelled (nil) or one of
// them fails fatally (that error). Cancelling ctx is the graceful
// shutdown: in-flight batches finish or roll back, acknowledged positions
// are saved.
func Run(ctx context.Context, cfg config.Config, role config.Role, log *zap.Logger, opts Options) error {
	err := run(ctx, cfg, role, log, opts)
	if err != nil && ctx.Err() != nil {
		// Asked to stop (during start-up, typically): that is a clean exit.
		log.Info("stopped during start-up", zap.Error(err))
		return nil
	}
	return err
}

// run starts the parts in a fixed order, each role's connections closed by
// run's own defers (last opened, first closed): the bus, then the sink's
// Postgres pool, then the tailer's MongoDB client; the role starters only
// add goroutines to the group.
func run(ctx context.Context, cfg config.Config, role config.Role, log *zap.Logger, opts Options) error {
	budget, set, colls, err := prepare(&cfg, role, log)
	if err != nil {
		return err
	}
	b, err := OpenBus(ctx, &cfg, "cdc", cfg.Tailer.MaxInFlight, log)
	if err != nil {
		return err
	}
	defer b.Close()

	met, health := newHealth(b, log)
	g, gctx := errgroup.WithContext(ctx)
	r := &replicator{cfg: &cfg, log: log, opts: opts, budget: budget, set: set, colls: colls, b: b, met: met, health: health, g: g}
	if role&config.RoleSink != 0 {
		pool, err := r.connectSink(ctx)
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := r.startSink(ctx, gctx, pool); err != nil {
			return err
		}
	}
	if role&config.RoleTailer != 0 {
		client, err := ConnectMongo(ctx, cfg.Mongo.URI)
		if err != nil {
			return err
		}
		defer client.Disconnect(context.WithoutCancel(ctx)) //nolint:errcheck // shutting down
		if err := r.startTailer(ctx, gctx, client); err != nil {
			return err
		}
	}
	if role&config.RoleSink != 0 {
		if err := startVerifier(ctx, gctx, g, &cfg, set, colls, met, log); err != nil { // verify.go
			return err
		}
	}
	if cfg.HTTP.Addr != "" {
		r.startHTTP(gctx)
	}
	log.Info("replicator running", zap.Strings("collections", colls), zap.String("database", cfg.Mongo.Database))
	// Returned, not logged: the caller handles it (cli.Main prints it once
	// and exits non-zero).
	if err := g.Wait(); err != nil {
		return fmt.Errorf("replicator stopped: %w", err)
	}
	return nil
}

// prepare does the checks that need no connection, so a bad configuration
// fails before anything is started: validation, the memory limit, the
// mappings, the replicated collections and their lanes.
func prepare(cfg *config.Config, role config.Role, log *zap.Logger) (config.MemoryBudget, *transform.Set, []string, error) {
	if err := cfg.Validate(role); err != nil {
		return config.MemoryBudget{}, nil, nil, err
	}
	budget := applyMemoryLimit(cfg, log)
	set, err := transforms.Load(cfg)
	if err != nil {
		return config.MemoryBudget{}, nil, nil, err
	}
	colls, err := transforms.Collections(cfg, set)
	if err != nil {
		return config.MemoryBudget{}, nil, nil, err
	}
	if err := CheckLanes(cfg, set, colls); err != nil {
		return config.MemoryBudget{}, nil, nil, err
	}
	return budget, set, colls, nil
}

// newHealth makes the metrics and the health checks every role shares;
// the bus's check is there from the start, each role adds its own.
func newHealth(b *Bus, log *zap.Logger) (*metrics.Metrics, *metrics.Health) {
	met, health := metrics.New(), metrics.NewHealth()
	health.SetLogger(log.Named("health"))
	health.Check("nats", func(context.Context) error {
		if st := b.Conn.Status(); st != nats.CONNECTED {
			return metrics.Reason(fmt.Sprintf("connection %s", st))
		}
		return nil
	})
	return met, health
}

// replicator is what the role starters share once the bus is open. It
// holds no connection it must close: run opens and closes those, so the
// order of the closes is visible in one place.
type replicator struct {
	cfg    *config.Config
	log    *zap.Logger
	opts   Options
	budget config.MemoryBudget
	set    *transform.Set
	colls  []string
	b      *Bus
	met    *metrics.Metrics
	health *metrics.Health
	// g runs every part; the first fatal error cancels the others.
	g *errgroup.Group
}

// connectSink opens the sink's Postgres pool. Lanes apply concurrently,
// one transaction each: every lane gets a connection (plus one for the
// sink's own queries) even when postgres.max_conns is lower, or lanes
// would wait for each other.
func (r *replicator) connectSink(ctx context.Context) (*pgxpool.Pool, error) {
	cfg, log, b := r.cfg, r.log, r.b
	warnUnverifiedPostgres(log, cfg.Postgres.URL) // pgtls.go
	conns := max(cfg.Postgres.MaxConns, int32(len(b.Streams.Lanes))+1)
	if conns > cfg.Postgres.MaxConns {
		log.Info("postgres pool raised to one connection per sink lane", zap.Int32("max_conns", conns),
			zap.Int32("configured", cfg.Postgres.MaxConns), zap.Int("lanes", len(b.Streams.Lanes)))
	}
	return ConnectPostgres(ctx, cfg.Postgres.URL, conns)
}

// startSink checks the database before any write, then starts the sink
// (one per lane assigned to this instance, with lanes) in r.g on gctx.
func (r *replicator) startSink(ctx, gctx context.Context, pool *pgxpool.Pool) error {
	cfg, log, b, met, health := r.cfg, r.log, r.b, r.met, r.health
	// The sink writes the cdc.* tables of one schema version: behind
	// it (a migration not applied) or ahead (a newer binary migrated
	// the database) it refuses, naming the versions, before any write.
	if err := migrate.RequireCurrent(ctx, cfg.Postgres.URL); err != nil {
		return fmt.Errorf("refusing to start the sink: %w", err)
	}
	if err := transform.CheckCatalog(ctx, pool, r.set); err != nil {
		return fmt.Errorf("refusing to start the sink: %w", err)
	}
	scfg := sink.Config{
		Consumer: cfg.Sink.Consumer, BatchSize: cfg.Sink.BatchSize, BatchWait: cfg.Sink.BatchWait,
		AckWait: cfg.Sink.AckWait, Streams: b.Streams, Unparked: cfg.Sink.UnparkedCollections,
		Owner: cfg.Sink.Instance, MaxWaiting: cfg.Sink.MaxWaiting, TxnSpillAfter: cfg.Sink.TxnSpillAfter,
		TxnTimeout: cfg.Sink.TxnTimeout, FailingAfter: cfg.Sink.FailingAfter,
		FetchBytes: r.budget.SinkFetchBytes,
	}
	health.Check("postgres", func(ctx context.Context) error { return pool.Ping(ctx) })
	health.Expect("sink", 30*time.Second)
	if b.Streams.Laned() {
		// Lanes: one Sink per lane assigned to this instance
		// (pkg/sink/lanes.go); instances share the lanes.
		lr := sink.NewLaneRunner(b.JS, pool, r.set, scfg, log.Named("sink"), forSink(met, health), r.opts.SinkHooks)
		lr.Heartbeat = cfg.Sink.MemberHeartbeat
		r.g.Go(func() error { return lr.Run(gctx) })
	} else {
		sk := sink.New(b.JS, pool, r.set, scfg, log.Named("sink"), forSink(met, health), r.opts.SinkHooks)
		r.g.Go(func() error { return sk.Run(gctx) })
	}
	return nil
}

// startTailer starts the tailer on client, then the oplog headroom
// monitor, which reads the tailer's checkpoint store.
func (r *replicator) startTailer(ctx, gctx context.Context, client *mongo.Client) error {
	cfg, b := r.cfg, r.b
	start, _ := config.ParseStartAt(cfg.Tailer.StartAt)
	store, err := checkpoint.NewKVStore(ctx, b.JS, cfg.NATS.CheckpointBucket, checkpoint.Key(cfg.Mongo.Database))
	if err != nil {
		return err
	}
	tl := tailer.New(client, b.JS, store, tailer.Config{
		Database: cfg.Mongo.Database, Collections: r.colls, Start: start,
		BatchSize: cfg.Tailer.BatchSize, MaxAwait: cfg.Tailer.MaxAwait, MaxInFlight: cfg.Tailer.MaxInFlight,
		MaxInFlightBytes:   r.budget.TailerInFlightBytes,
		CheckpointInterval: cfg.Tailer.CheckpointInterval, PreImages: cfg.Tailer.PreImages, Streams: b.Streams,
		Owner: checkpoint.NewOwner(cfg.Tailer.Instance), StandbyTakeover: cfg.Tailer.StandbyTakeover,
		FullDocument: tailer.FullDocumentMode(cfg.Tailer.FullDocument), FailingAfter: cfg.Tailer.FailingAfter,
		Covered: snapshotCovers(b.JS, cfg.Snapshot.ProgressBucket, cfg.Mongo.Database),
	}, r.log.Named("tailer"), forTailer(r.met, r.health))
	r.health.Check("mongo", func(ctx context.Context) error { return client.Ping(ctx, readpref.Primary()) })
	r.health.Expect("tailer", 30*time.Second)
	r.g.Go(func() error { return tl.Run(gctx) })
	r.startOplogMonitor(gctx, client, store)
	return nil
}

// startOplogMonitor warns while the tailer's checkpoint is close to falling
// off the oplog, when a restart could still resume from it.
func (r *replicator) startOplogMonitor(gctx context.Context, client *mongo.Client, store *checkpoint.KVStore) {
	mon := &oplog.Monitor{
		Client:    client,
		Threshold: r.cfg.Oplog.HeadroomWarning,
		Log:       r.log.Named("oplog"),
		Checkpoint: func(ctx context.Context) (event.ClusterTime, bool, error) {
			cp, _, err := store.Load(ctx)
			if err != nil || cp == nil {
				return event.ClusterTime{}, false, err
			}
			ct := cp.EffectiveTime()
			return ct, ct.T > 0, nil
		},
		Observe: func(e oplog.Estimate) { r.met.SetHeadroom(e.Headroom) },
	}
	r.g.Go(func() error { return mon.Run(gctx) })
}

// startHTTP serves metrics, health and (when enabled) pprof until gctx
// ends; opts.HTTPReady learns the bound address.
func (r *replicator) startHTTP(gctx context.Context) {
	cfg := r.cfg
	r.g.Go(func() error {
		return metrics.Serve(gctx, metrics.ServeConfig{Addr: cfg.HTTP.Addr, WebConfigFile: cfg.HTTP.WebConfigFile},
			metrics.Handler(r.met, r.health, metrics.WithProfiling(cfg.HTTP.Pprof)), r.log, r.opts.HTTPReady)
	})
}

// LaneConsumers lists every sink lane's consumer (position row) of cfg, or
// nil without lanes: what verify needs to know how far the sink applied.
func LaneConsumers(cfg *config.Config) []string {
	sc := bus.StreamsFromConfig(cfg)
	if !sc.Laned() {
		return nil
	}
	var out []string
	for _, l := range sc.LaneNames() {
		out = append(out, sink.LaneConsumer(cfg.Sink.Consumer, l))
	}
	return out
}
