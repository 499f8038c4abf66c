// Package app wires the replicator's parts from configuration: the bus
// (embedded or external NATS), the tailer, the sink and their connections.
// cmd/cdc calls it through package cli; end-to-end tests call it directly.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/metrics"
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

// StreamsConfig derives the bus declarations from cfg.
func StreamsConfig(cfg *config.Config) bus.StreamsConfig {
	return bus.StreamsConfig{
		Stream:           cfg.NATS.Stream,
		SubjectPrefix:    cfg.NATS.SubjectPrefix,
		DLQStream:        cfg.NATS.DLQStream,
		Replicas:         cfg.NATS.Replicas,
		DedupWindow:      cfg.NATS.DedupWindow,
		MaxAge:           cfg.NATS.MaxAge,
		MaxBytes:         cfg.NATS.MaxBytes,
		CheckpointBucket: cfg.NATS.CheckpointBucket,
	}.WithLanes(BusLanes(cfg))
}

// BusLanes is cfg's sink.lanes for pkg/bus (nil: one lane). Validate has
// refused a malformed value; CheckLanes checks it against the replicated
// collections.
func BusLanes(cfg *config.Config) []bus.Lane {
	lanes, err := config.ParseLanes(cfg.Sink.Lanes)
	if err != nil {
		return nil
	}
	return bus.LanesFromConfig(lanes)
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

// LoadTransforms loads the mappings from cfg.Transforms.Dir, or the
// built-in set when it is empty.
func LoadTransforms(cfg *config.Config) (*transform.Set, error) {
	if cfg.Transforms.Dir != "" {
		return transform.Load(os.DirFS(cfg.Transforms.Dir), ".")
	}
	return transform.Load(transforms.Builtin, ".")
}

// Collections returns the collections to replicate: the configured list,
// each of which must have a transform, or every transformed collection.
func Collections(cfg *config.Config, set *transform.Set) ([]string, error) {
	if len(cfg.Mongo.Collections) == 0 {
		return set.Collections(), nil
	}
	for i, c := range cfg.Mongo.Collections {
		if _, ok := set.Get(c); !ok {
			return nil, &config.FieldError{Field: fmt.Sprintf("mongo.collections[%d]", i),
				Reason: fmt.Sprintf("collection %q has no transform (mapped: %v)", c, set.Collections())}
		}
	}
	out := slices.Clone(cfg.Mongo.Collections)
	slices.Sort(out)
	return out, nil
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
	b := &Bus{Streams: StreamsConfig(cfg)}
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

// ConnectMongo connects and pings the primary within StartupTimeout.
func ConnectMongo(ctx context.Context, uri string) (*mongo.Client, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetAppName("cdc"))
	if err != nil {
		return nil, redact.Error(fmt.Errorf("mongo %s: %w", redact.URL(uri), err), uri)
	}
	pctx, cancel := context.WithTimeout(ctx, StartupTimeout)
	defer cancel()
	if err := client.Ping(pctx, readpref.Primary()); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, redact.Error(fmt.Errorf("MongoDB unreachable at start-up (%s): %w", redact.URL(uri), err), uri)
	}
	return client, nil
}

// ConnectPostgres opens a pool and pings it within StartupTimeout.
func ConnectPostgres(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The cause alone (pgx's message repeats the string), or the whole
		// error when it has none; scrubbed either way: pgx's own masking
		// is best effort.
		cause := errors.Unwrap(err)
		if cause == nil {
			cause = err
		}
		return nil, redact.Error(fmt.Errorf("postgres url %s: %w", redact.URL(url), cause), url)
	}
	pcfg.MaxConns = maxConns
	pcfg.ConnConfig.RuntimeParams["application_name"] = "cdc"
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("postgres %s: %w", redact.URL(url), err), url)
	}
	pctx, cancel := context.WithTimeout(ctx, StartupTimeout)
	defer cancel()
	for {
		err = pool.Ping(pctx)
		if err == nil {
			return pool, nil
		}
		if permanentPostgresError(err) { // pgtls.go: a certificate or identity refused now is refused again
			pool.Close()
			return nil, redact.Error(fmt.Errorf("PostgreSQL refused the connection at start-up (%s): %w", redact.URL(url), err), url)
		}
		select {
		case <-pctx.Done():
			pool.Close()
			return nil, redact.Error(fmt.Errorf("PostgreSQL unreachable at start-up (%s): %w", redact.URL(url), err), url)
		case <-time.After(500 * time.Millisecond):
		}
	}
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

func run(ctx context.Context, cfg config.Config, role config.Role, log *zap.Logger, opts Options) error {
	if err := cfg.Validate(role); err != nil {
		return err
	}
	budget := applyMemoryLimit(&cfg, log)
	set, err := LoadTransforms(&cfg)
	if err != nil {
		return err
	}
	colls, err := Collections(&cfg, set)
	if err != nil {
		return err
	}
	if err := CheckLanes(&cfg, set, colls); err != nil {
		return err
	}
	b, err := OpenBus(ctx, &cfg, "cdc", cfg.Tailer.MaxInFlight, log)
	if err != nil {
		return err
	}
	defer b.Close()

	met, health := metrics.New(), metrics.NewHealth()
	health.SetLogger(log.Named("health"))
	health.Check("nats", func(context.Context) error {
		if st := b.Conn.Status(); st != nats.CONNECTED {
			return metrics.Reason(fmt.Sprintf("connection %s", st))
		}
		return nil
	})
	g, gctx := errgroup.WithContext(ctx)
	if role&config.RoleSink != 0 {
		warnUnverifiedPostgres(log, cfg.Postgres.URL) // pgtls.go
		// Lanes apply concurrently, one transaction each: give every lane
		// a connection (plus one for the sink's own queries) even when
		// postgres.max_conns is lower, or lanes would wait for each other.
		conns := max(cfg.Postgres.MaxConns, int32(len(b.Streams.Lanes))+1)
		if conns > cfg.Postgres.MaxConns {
			log.Info("postgres pool raised to one connection per sink lane", zap.Int32("max_conns", conns),
				zap.Int32("configured", cfg.Postgres.MaxConns), zap.Int("lanes", len(b.Streams.Lanes)))
		}
		pool, err := ConnectPostgres(ctx, cfg.Postgres.URL, conns)
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := transform.CheckCatalog(ctx, pool, set); err != nil {
			return fmt.Errorf("refusing to start the sink: %w", err)
		}
		scfg := sink.Config{
			Consumer: cfg.Sink.Consumer, BatchSize: cfg.Sink.BatchSize, BatchWait: cfg.Sink.BatchWait,
			AckWait: cfg.Sink.AckWait, Streams: b.Streams, Unparked: cfg.Sink.UnparkedCollections,
			Owner: cfg.Sink.Instance, MaxWaiting: cfg.Sink.MaxWaiting, TxnSpillAfter: cfg.Sink.TxnSpillAfter,
			TxnTimeout: cfg.Sink.TxnTimeout, FailingAfter: cfg.Sink.FailingAfter,
			FetchBytes: budget.SinkFetchBytes,
		}
		health.Check("postgres", func(ctx context.Context) error { return pool.Ping(ctx) })
		health.Expect("sink", 30*time.Second)
		if b.Streams.Laned() {
			// Lanes: one Sink per lane assigned to this instance
			// (pkg/sink/lanes.go); instances share the lanes.
			lr := sink.NewLaneRunner(b.JS, pool, set, scfg, log.Named("sink"), met.ForSink(health), opts.SinkHooks)
			lr.Heartbeat = cfg.Sink.MemberHeartbeat
			g.Go(func() error { return lr.Run(gctx) })
		} else {
			sk := sink.New(b.JS, pool, set, scfg, log.Named("sink"), met.ForSink(health), opts.SinkHooks)
			g.Go(func() error { return sk.Run(gctx) })
		}
	}
	if role&config.RoleTailer != 0 {
		client, err := ConnectMongo(ctx, cfg.Mongo.URI)
		if err != nil {
			return err
		}
		defer client.Disconnect(context.WithoutCancel(ctx)) //nolint:errcheck // shutting down
		start, _ := config.ParseStartAt(cfg.Tailer.StartAt)
		store, err := tailer.NewKVCheckpoints(ctx, b.JS, cfg.NATS.CheckpointBucket, tailer.CheckpointKey(cfg.Mongo.Database))
		if err != nil {
			return err
		}
		tl := tailer.New(client, b.JS, store, tailer.Config{
			Database: cfg.Mongo.Database, Collections: colls, Start: start,
			BatchSize: cfg.Tailer.BatchSize, MaxAwait: cfg.Tailer.MaxAwait, MaxInFlight: cfg.Tailer.MaxInFlight,
			MaxInFlightBytes:   budget.TailerInFlightBytes,
			CheckpointInterval: cfg.Tailer.CheckpointInterval, PreImages: cfg.Tailer.PreImages, Streams: b.Streams,
			Owner: tailer.NewOwner(cfg.Tailer.Instance), StandbyTakeover: cfg.Tailer.StandbyTakeover,
			FullDocument: tailer.FullDocumentMode(cfg.Tailer.FullDocument), FailingAfter: cfg.Tailer.FailingAfter,
			Covered: snapshotCovers(b.JS, cfg.Snapshot.ProgressBucket, cfg.Mongo.Database),
		}, log.Named("tailer"), met.ForTailer(health))
		health.Check("mongo", func(ctx context.Context) error { return client.Ping(ctx, readpref.Primary()) })
		health.Expect("tailer", 30*time.Second)
		g.Go(func() error { return tl.Run(gctx) })
		mon := &oplog.Monitor{
			Client:    client,
			Threshold: cfg.Oplog.HeadroomWarning,
			Log:       log.Named("oplog"),
			Checkpoint: func(ctx context.Context) (event.ClusterTime, bool, error) {
				cp, _, err := store.Load(ctx)
				if err != nil || cp == nil {
					return event.ClusterTime{}, false, err
				}
				tok, err := cp.ResumeToken()
				if err != nil {
					return event.ClusterTime{}, false, err
				}
				if ct, ok := oplog.TokenTime(tok); ok {
					return ct, true, nil
				}
				return cp.ClusterTime, cp.ClusterTime.T > 0, nil
			},
			Observe: func(e oplog.Estimate) { met.SetHeadroom(e.Headroom) },
		}
		g.Go(func() error { return mon.Run(gctx) })
	}
	if role&config.RoleSink != 0 {
		if err := startVerifier(ctx, gctx, g, &cfg, set, colls, met, log); err != nil { // verify.go
			return err
		}
	}
	if cfg.HTTP.Addr != "" {
		g.Go(func() error {
			return metrics.Serve(gctx, metrics.ServeConfig{Addr: cfg.HTTP.Addr, WebConfigFile: cfg.HTTP.WebConfigFile},
				metrics.Handler(met, health, metrics.WithProfiling(cfg.HTTP.Pprof)), log, opts.HTTPReady)
		})
	}
	log.Info("replicator running", zap.Strings("collections", colls), zap.String("database", cfg.Mongo.Database))
	err = g.Wait()
	if err != nil {
		log.Error("replicator stopped", zap.Error(err))
	}
	return err
}

// LaneConsumers lists every sink lane's consumer (position row) of cfg, or
// nil without lanes: what verify needs to know how far the sink applied.
func LaneConsumers(cfg *config.Config) []string {
	sc := StreamsConfig(cfg)
	if !sc.Laned() {
		return nil
	}
	var out []string
	for _, l := range sc.LaneNames() {
		out = append(out, sink.LaneConsumer(cfg.Sink.Consumer, l))
	}
	return out
}
