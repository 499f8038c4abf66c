package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/oplog"
	"github.com/amanat/cdc/pkg/report"
	"github.com/amanat/cdc/pkg/transform"
)

// Config configures a snapshot run.
type Config struct {
	// Database is the source database.
	Database string
	// Collections to snapshot; each must be replicated (in Replicated)
	// and mapped. Run scans them parents first (Order).
	Collections []string
	// Replicated are the collections the tailer streams.
	Replicated []string
	// BatchSize is the documents per find and per progress record.
	BatchSize int
	// Streams names the stream, subjects and checkpoint bucket.
	Streams bus.StreamsConfig
	// ProgressBucket is the KV bucket of the progress record.
	ProgressBucket string
	// TailerStart is tailer.start_at: an earlier configured start is kept
	// when the snapshot creates the tailer's first checkpoint.
	TailerStart config.StartPoint
	// TailerWait bounds the wait of a referencing collection's batch for
	// the tailer (see the package documentation); 0 disables it.
	TailerWait time.Duration
	// HeadroomWarning is oplog.headroom_warning.
	HeadroomWarning time.Duration
	// Restart discards an unfinished snapshot and starts a new one.
	Restart bool
	// DryRun reports the plan and writes nothing.
	DryRun bool
}

// Runner runs one snapshot. Create with New; Run once.
type Runner struct {
	client  *mongo.Client
	js      jetstream.JetStream
	set     *transform.Set
	cfg     Config
	log     *zap.Logger
	display Display
	cps     *checkpoint.KVStore
	pub     *bus.Publisher
}

// New returns a Runner. It does no I/O. display may be nil.
func New(client *mongo.Client, js jetstream.JetStream, set *transform.Set, cfg Config, log *zap.Logger, display Display) *Runner {
	if display == nil {
		display = NopDisplay{}
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	return &Runner{client: client, js: js, set: set, cfg: cfg, log: log, display: display, pub: bus.NewPublisher(js, cfg.Streams)}
}

// Run performs (or resumes) the snapshot and returns its report. The
// error is non-nil when the snapshot did not complete; what was done is
// saved and the same command resumes it. Cancelling ctx stops it the same
// way (the report and ctx.Err() are returned).
func (r *Runner) Run(ctx context.Context) (*report.Report, error) {
	rep := &report.Report{Command: "snapshot", DryRun: r.cfg.DryRun}
	if err := r.check(); err != nil {
		return rep, err
	}
	order, cyclic := Order(r.set, r.cfg.Collections)
	var err error
	if r.cps, err = checkpoint.NewKVStore(ctx, r.js, r.cfg.Streams.CheckpointBucket, checkpoint.Key(r.cfg.Database)); err != nil {
		return rep, err
	}
	store, prog, err := r.openProgress(ctx)
	if err != nil {
		return rep, err
	}
	sess, err := r.client.StartSession(options.Session().SetCausalConsistency(true))
	if err != nil {
		return rep, fmt.Errorf("mongo session: %w", err)
	}
	defer sess.EndSession(context.WithoutCancel(ctx))

	resume := prog != nil && !prog.Complete && !r.cfg.Restart
	if resume {
		if !sameSet(prog.Names(), order) {
			return rep, fmt.Errorf("%w: the snapshot of %v started at cluster time %s (%s) is unfinished; "+
				"run `cdc snapshot --collections %s` to resume it, or add --restart to discard it and snapshot %v",
				ErrOtherSnapshot, prog.Names(), prog.ClusterTime, prog.ClusterTime.Time().Format(time.RFC3339),
				joinComma(prog.Names()), order)
		}
		desc, err := r.verifyHandoff(ctx, prog)
		if err != nil {
			return rep, err
		}
		prog.Runs++
		rep.Note("resuming the snapshot started at cluster time %s (%s), run %d", prog.ClusterTime,
			prog.ClusterTime.Time().Format(time.RFC3339), prog.Runs)
		rep.Note("hand-off: %s", desc)
	} else {
		plan, err := r.handoff(ctx, sess, order[0])
		if err != nil {
			return rep, err
		}
		prog = &Progress{V: ProgressVersion, Database: r.cfg.Database, ClusterTime: plan.T, Handoff: plan.Desc,
			Runs: 1, StartedAt: time.Now().UTC()}
		for _, c := range order {
			prog.Collections = append(prog.Collections, CollectionProgress{Name: c})
		}
		rep.Note("snapshot start time (cluster time of a majority read): %s (%s)", plan.T, plan.T.Time().Format(time.RFC3339))
		rep.Note("hand-off: %s", plan.Desc)
	}
	rep.Note("order (parents first): %s", joinComma(prog.Names()))
	if len(cyclic) > 0 {
		rep.Note("reference cycle broken at %v: their forward references rely on the column policies (wait, null)", cyclic)
	}
	if r.cfg.DryRun {
		return rep, r.plan(ctx, sess, prog, rep)
	}
	if err := store.save(ctx, prog); err != nil {
		return rep, err
	}
	r.log.Info("snapshot running", zap.String("database", r.cfg.Database), zap.Strings("collections", prog.Names()),
		zap.Stringer("cluster_time", prog.ClusterTime), zap.Int("run", prog.Runs), zap.String("handoff", prog.Handoff))
	for i := range prog.Collections {
		if prog.Collections[i].Complete {
			continue
		}
		if err := r.scan(ctx, sess, store, prog, i, rep); err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			rep.Errors++
			return rep, err
		}
	}
	prog.Complete = true
	if err := store.save(ctx, prog); err != nil {
		return rep, err
	}
	r.warnHeadroom(ctx, rep)
	return rep, nil
}

// check validates the configuration against the mappings.
func (r *Runner) check() error {
	if len(r.cfg.Collections) == 0 {
		return errors.New("snapshot: no collections")
	}
	for _, c := range r.cfg.Collections {
		if _, ok := r.set.Get(c); !ok {
			return fmt.Errorf("snapshot: collection %q has no transform", c)
		}
		if !slices.Contains(r.cfg.Replicated, c) {
			return fmt.Errorf("snapshot: collection %q is not replicated (mongo.collections): the tailer would not stream its changes after the snapshot", c)
		}
	}
	return nil
}

func (r *Runner) openProgress(ctx context.Context) (*progressStore, *Progress, error) {
	var kv jetstream.KeyValue
	var err error
	if r.cfg.DryRun {
		kv, err = r.js.KeyValue(ctx, r.cfg.ProgressBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, nil, nil
		}
	} else {
		kv, err = OpenProgressBucket(ctx, r.js, r.cfg.ProgressBucket, r.cfg.Streams.Replicas)
	}
	if err != nil {
		return nil, nil, err
	}
	store := &progressStore{kv: kv, key: ProgressKey(r.cfg.Database)}
	prog, err := store.load(ctx)
	return store, prog, err
}

// plan fills a dry run's report: per collection, its count, where it
// would start and whether its batches wait for the tailer.
func (r *Runner) plan(ctx context.Context, sess *mongo.Session, prog *Progress, rep *report.Report) error {
	for _, cp := range prog.Collections {
		coll := r.collection(cp.Name)
		var n int64
		err := mongo.WithSession(ctx, sess, func(sc context.Context) error {
			var err error
			n, err = coll.CountDocuments(sc, bson.D{})
			return err
		})
		if err != nil {
			return fmt.Errorf("count %s: %w", cp.Name, err)
		}
		from := "from the first _id"
		switch {
		case cp.Complete:
			from = "already done"
		case len(cp.LastID) > 0:
			from = fmt.Sprintf("after _id %s (%d done)", cp.LastID, cp.Done)
		}
		wait := ""
		if ps := Parents(r.set, cp.Name); len(ps) > 0 && r.cfg.TailerWait > 0 {
			wait = fmt.Sprintf("; references %v: each batch waits for the tailer to pass its read time", ps)
		}
		rep.Note("%s: %d documents, %s%s", cp.Name, n, from, wait)
	}
	return nil
}

func (r *Runner) collection(name string) *mongo.Collection {
	return r.client.Database(r.cfg.Database).Collection(name, options.Collection().SetReadConcern(readconcern.Majority()))
}

// batch is one find's documents and the cluster time of the read.
type batch struct {
	docs     []bson.Raw
	readTime event.ClusterTime
	err      error
}

// scan publishes collection i from its saved position to its end.
func (r *Runner) scan(ctx context.Context, sess *mongo.Session, store *progressStore, prog *Progress, i int, rep *report.Report) error {
	cp := &prog.Collections[i]
	coll := r.collection(cp.Name)
	err := mongo.WithSession(ctx, sess, func(sc context.Context) error {
		var err error
		cp.Total, err = coll.CountDocuments(sc, bson.D{})
		return err
	})
	if err != nil {
		return fmt.Errorf("count %s: %w", cp.Name, err)
	}
	last, hasLast, err := cp.lastID()
	if err != nil {
		return err
	}
	waitTailer := r.cfg.TailerWait > 0 && len(Parents(r.set, cp.Name)) > 0
	r.display.Begin(cp.Name, cp.Total, cp.Done)

	batches, stop := r.readAhead(ctx, sess, coll, last, hasLast)
	defer stop()
	for b := range batches {
		if b.err != nil {
			return fmt.Errorf("scan %s: %w", cp.Name, b.err)
		}
		if len(b.docs) == 0 {
			break
		}
		if err := r.publish(ctx, store, prog, cp, b, waitTailer, rep); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cp.Complete = true
	if err := store.save(ctx, prog); err != nil {
		return err
	}
	r.display.End(cp.Name)
	return nil
}

// readAhead reads coll after last (from its start without hasLast) ahead
// of publishing (bounded), so waiting for acknowledgements and for the
// tailer overlaps with reading. The channel closes after an empty batch or
// an error; the caller must call stop before it is done with the session.
func (r *Runner) readAhead(ctx context.Context, sess *mongo.Session, coll *mongo.Collection, last bson.RawValue, hasLast bool) (<-chan batch, func()) {
	rctx, cancel := context.WithCancel(ctx)
	batches := make(chan batch, 16)
	stop := func() {
		// Stop the reader and wait for it: it uses the session.
		cancel()
		for range batches {
		}
	}
	go func() {
		defer close(batches)
		for {
			docs, rt, err := r.nextBatch(rctx, sess, coll, last, hasLast)
			select {
			case batches <- batch{docs: docs, readTime: rt, err: err}:
			case <-rctx.Done():
				return
			}
			if err != nil || len(docs) == 0 {
				return
			}
			last, hasLast = docs[len(docs)-1].Lookup("_id"), true
		}
	}()
	return batches, stop
}

// publish publishes one batch of collection cp and saves the progress
// after it, so a restarted snapshot resumes after the last batch
// JetStream acknowledged.
func (r *Runner) publish(ctx context.Context, store *progressStore, prog *Progress, cp *CollectionProgress, b batch, waitTailer bool, rep *report.Report) error {
	n := int64(len(b.docs))
	rep.Read += n
	rep.AddCollection(cp.Name, n)
	if waitTailer {
		if err := r.waitTailer(ctx, cp.Name, b.readTime); err != nil {
			return err
		}
	}
	evs := make([]*event.Event, len(b.docs))
	for j, d := range b.docs {
		evs[j] = event.FromDocument(event.OpSnapshot, r.cfg.Database, cp.Name, d.Lookup("_id"), d, prog.ClusterTime)
	}
	res, err := r.pub.PublishBatch(ctx, evs)
	if err != nil {
		return err
	}
	rep.Published += int64(res.Stored)
	rep.Skipped += int64(res.Duplicates)
	lastID, err := bson.MarshalExtJSON(event.KeyDoc(b.docs[len(b.docs)-1].Lookup("_id")), true, false)
	if err != nil {
		return fmt.Errorf("encode last _id of %s: %w", cp.Name, err)
	}
	cp.LastID = lastID
	cp.Done += n
	if err := store.save(ctx, prog); err != nil {
		return err
	}
	r.display.Advance(cp.Name, n)
	return nil
}

func (r *Runner) warnHeadroom(ctx context.Context, rep *report.Report) {
	cp, _, err := r.cps.Load(ctx)
	if err != nil || cp == nil {
		if err != nil {
			r.log.Warn("cannot read the tailer checkpoint for the headroom check", zap.Error(err))
		}
		return
	}
	oldest, newest, err := oplog.Window(ctx, r.client)
	if err != nil {
		r.log.Warn("cannot read the oplog window for the headroom check", zap.Error(err))
		return
	}
	e, err := oplog.Measure(ctx, r.client, cp.EffectiveTime(), oldest, newest)
	if err != nil {
		r.log.Warn("cannot read the oplog for the headroom check", zap.Error(err))
		return
	}
	if oplog.Warn(r.log, e, r.cfg.HeadroomWarning) {
		rep.Note("WARNING: the tailer checkpoint's oplog headroom is %s (threshold %s)", e.Headroom, r.cfg.HeadroomWarning)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func joinComma(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}
