package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/oplog"
	"github.com/amanat/cdc/pkg/report"
	"github.com/amanat/cdc/pkg/transform"
)

// OplogRangeError refuses an oplog replay's range: it ends in the future
// (Now is set) or starts after its end. errors.Is(err, ErrBadRange)
// holds. Error names the bounds "the start" and "the end"; the command
// line names them by its flags (Text).
type OplogRangeError struct {
	From, To event.ClusterTime
	// Now is the majority-committed cluster time when To is after it
	// (zero otherwise).
	Now event.ClusterTime
}

// Future reports whether the range ends in the future (else it starts
// after its end).
func (e *OplogRangeError) Future() bool { return e.Now != (event.ClusterTime{}) }

// Text words the refusal with the bounds named from and to.
func (e *OplogRangeError) Text(from, to string) string {
	if e.Future() {
		return fmt.Sprintf("%v: %s %s is in the future (now is %s)", ErrBadRange, to, describe(e.To), describe(e.Now))
	}
	return fmt.Sprintf("%v: %s %s is after %s %s", ErrBadRange, from, describe(e.From), to, describe(e.To))
}

func (e *OplogRangeError) Error() string { return e.Text("the start", "the end") }

// Unwrap makes the refusal an ErrBadRange.
func (e *OplogRangeError) Unwrap() error { return ErrBadRange }

// OplogConfig configures an oplog replay.
type OplogConfig struct {
	// Database is the source database; Collections the collections to
	// replay (each mapped).
	Database    string
	Collections []string
	// From and To bound the range of cluster times, both inclusive. A
	// zero To is "now" (a majority read's cluster time at the start).
	From, To event.ClusterTime
	// Streams names the stream and subjects.
	Streams bus.StreamsConfig
	// BatchSize is the events per publish batch.
	BatchSize int
	// PreImages mirrors tailer.pre_images.
	PreImages bool
	// Force forgets the versions of lost rows and publishes their events
	// under ids suffixed "~replay:<to>" (see the package doc), then waits
	// up to ApplyTimeout for the live sink to apply them.
	Force        bool
	ApplyTimeout time.Duration
	// DryRun reads the range and reports; it publishes nothing.
	DryRun bool
}

// Oplog re-reads [From, To] through a change stream opened at From and
// publishes the changes exactly as the tailer does (same ids from the
// resume tokens, same transaction numbering), so copies JetStream or the
// sink already has change nothing. A From older than the oldest oplog
// entry is refused with a *oplog.RangeLostError naming the oldest time
// still available.
func Oplog(ctx context.Context, client *mongo.Client, js jetstream.JetStream, pool *pgxpool.Pool, set *transform.Set, cfg OplogConfig, log *zap.Logger) (*report.Report, error) {
	rep := &report.Report{Command: "replay oplog", DryRun: cfg.DryRun}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if len(cfg.Collections) == 0 {
		return rep, errors.New("replay oplog: no collections")
	}
	for _, c := range cfg.Collections {
		if _, ok := set.Get(c); !ok {
			return rep, fmt.Errorf("replay oplog: collection %q has no transform", c)
		}
	}
	oldest, newest, err := oplog.Window(ctx, client)
	if err != nil {
		return rep, err
	}
	if err := oplog.CheckStart(cfg.From, oldest); err != nil {
		rep.Errors++
		return rep, err
	}
	sess, err := client.StartSession(options.Session().SetCausalConsistency(true))
	if err != nil {
		return rep, fmt.Errorf("mongo session: %w", err)
	}
	now, err := oplog.MajorityTime(ctx, client, sess, cfg.Database, cfg.Collections[0])
	sess.EndSession(context.WithoutCancel(ctx))
	if err != nil {
		return rep, err
	}
	to := cfg.To
	switch {
	case to == (event.ClusterTime{}):
		to = now
	case to.T > now.T:
		return rep, &OplogRangeError{From: cfg.From, To: to, Now: now}
	case to.Compare(now) > 0:
		to = now // the rest of the current second
	}
	if cfg.From.Compare(to) > 0 {
		return rep, &OplogRangeError{From: cfg.From, To: to}
	}
	rep.Note("range: %s .. %s (oplog holds %s .. %s)", describe(cfg.From), describe(to), describe(oldest), describe(newest))
	r := &oplogReplay{client: client, pool: pool, set: set, cfg: cfg, to: to, log: log, rep: rep,
		pub: bus.NewPublisher(js, cfg.Streams), touched: map[DocRef]bool{}, before: map[DocRef]event.Position{}, awaited: map[DocRef]Awaited{}}
	if err := r.read(ctx); err != nil {
		var se mongo.ServerError
		if errors.As(err, &se) && se.HasErrorCode(286) {
			if o, oerr := oplog.Oldest(ctx, client); oerr == nil {
				err = &oplog.RangeLostError{From: cfg.From, Oldest: o}
			}
		}
		rep.Errors++
		return rep, err
	}
	return rep, r.finish(ctx)
}

type oplogReplay struct {
	client *mongo.Client
	pool   *pgxpool.Pool
	set    *transform.Set
	cfg    OplogConfig
	to     event.ClusterTime
	log    *zap.Logger
	rep    *report.Report
	pub    *bus.Publisher

	batch []*event.Event
	// txns numbers transaction events as the tailer does.
	txns event.TxnSequencer

	touched map[DocRef]bool
	before  map[DocRef]event.Position
	awaited map[DocRef]Awaited
}

// read follows the change stream from From until it passes To.
func (r *oplogReplay) read(ctx context.Context) error {
	from := r.cfg.From.Timestamp()
	opts := options.ChangeStream().SetStartAtOperationTime(&from).SetFullDocument(options.UpdateLookup).
		SetBatchSize(int32(r.cfg.BatchSize)).SetMaxAwaitTime(500 * time.Millisecond)
	if r.cfg.PreImages {
		opts.SetFullDocumentBeforeChange(options.WhenAvailable)
	}
	pipeline := mongo.Pipeline{{{Key: "$match", Value: bson.D{
		{Key: "ns.coll", Value: bson.D{{Key: "$in", Value: r.cfg.Collections}}},
		{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "update", "replace", "delete", "drop", "rename", "dropDatabase", "invalidate"}}}},
	}}}}
	cs, err := r.client.Database(r.cfg.Database).Watch(ctx, pipeline, opts)
	if err != nil {
		return fmt.Errorf("open a change stream at %s: %w", describe(r.cfg.From), err)
	}
	defer cs.Close(context.WithoutCancel(ctx))
	for {
		if cs.TryNext(ctx) {
			done, err := r.handle(ctx, cs.Current)
			if err != nil || done {
				if err == nil {
					err = r.flush(ctx, true)
				}
				return err
			}
			continue
		}
		if err := cs.Err(); err != nil {
			return fmt.Errorf("change stream: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// Idle: as the tailer does, the held transaction event is the
		// transaction's last.
		r.release()
		if ct, ok := oplog.TokenTime(cs.ResumeToken()); ok && ct.Compare(r.to) >= 0 {
			return r.flush(ctx, true)
		}
		if err := r.flush(ctx, false); err != nil {
			return err
		}
	}
}

// handle takes one change; done is true once the range is passed.
func (r *oplogReplay) handle(ctx context.Context, raw bson.Raw) (done bool, err error) {
	ev, txn, err := event.FromChange(raw)
	if errors.Is(err, event.ErrNotDataChange) {
		r.release()
		op, _ := raw.Lookup("operationType").StringValueOK()
		coll, _ := raw.Lookup("ns", "coll").StringValueOK()
		r.rep.Skipped++
		r.rep.Note("skipped a %s of %s: not a document change (its documents may need a snapshot)", op, coll)
		return op == "invalidate", nil
	}
	if err != nil {
		r.rep.Errors++
		return false, err
	}
	if ev.Source.ClusterTime.Compare(r.to) > 0 {
		r.release()
		return true, nil
	}
	r.rep.Read++
	r.rep.AddCollection(ev.Source.Coll, 1)
	r.take(r.txns.Add(ev, txn, nil))
	if len(r.batch) >= r.cfg.BatchSize {
		return false, r.flush(ctx, false)
	}
	return false, nil
}

// release moves the held transaction event into the batch as its
// transaction's last.
func (r *oplogReplay) release() { r.take(r.txns.Flush()) }

func (r *oplogReplay) take(evs []event.Sequenced) {
	for _, s := range evs {
		r.batch = append(r.batch, s.Event)
	}
}

// flush publishes the batch (all: even a small one).
func (r *oplogReplay) flush(ctx context.Context, all bool) error {
	if len(r.batch) == 0 || (!all && len(r.batch) < r.cfg.BatchSize && r.txns.Holding()) {
		return nil
	}
	evs := r.batch
	r.batch = nil
	refs := make([]DocRef, 0, len(evs))
	for _, ev := range evs {
		key, err := ev.DocKey()
		if err != nil {
			return err
		}
		ref := DocRef{Collection: ev.Source.Coll, Key: key}
		refs = append(refs, ref)
		r.touched[ref] = true
	}
	if r.cfg.DryRun {
		return nil
	}
	if r.cfg.Force {
		lost, err := ForgetLost(ctx, r.pool, r.set, refs)
		if err != nil {
			return err
		}
		for _, l := range lost {
			if _, seen := r.before[l.DocRef]; !seen {
				r.before[l.DocRef] = l.Version
			}
		}
		// Only the events of forgotten documents get new ids: the
		// others keep the tailer's, so JetStream drops the copies.
		suffix := "~replay:" + r.to.String()
		for i, ev := range evs {
			if _, forced := r.before[refs[i]]; forced {
				ev.ID += suffix
				r.awaited[refs[i]] = Awaited{Position: ev.Position(), EventID: ev.ID}
			}
		}
	}
	res, err := r.pub.PublishBatch(ctx, evs)
	if err != nil {
		r.rep.Errors += int64(len(evs))
		return err
	}
	r.rep.Published += int64(res.Stored)
	r.rep.Skipped += int64(res.Duplicates)
	return nil
}

// finish reports lost rows and, with Force, waits for the re-published
// events of forgotten documents to be applied and checks their versions.
func (r *oplogReplay) finish(ctx context.Context) error {
	refs := make([]DocRef, 0, len(r.touched))
	for ref := range r.touched {
		refs = append(refs, ref)
	}
	sortRefs(refs)
	if r.cfg.Force && !r.cfg.DryRun && len(r.awaited) > 0 {
		pending, dead, err := WaitApplied(ctx, r.pool, r.awaited, r.cfg.ApplyTimeout)
		if err != nil {
			return err
		}
		if len(pending) > 0 {
			r.rep.Errors += int64(len(pending))
			r.rep.Note("%d re-published events of lost rows were not applied within %s (is the sink running?), e.g. %s %s",
				len(pending), r.cfg.ApplyTimeout, pending[0].Collection, pending[0].Key)
		}
		if len(dead) > 0 {
			r.rep.Errors += int64(len(dead))
			r.rep.Note("%d re-published events of lost rows were dead-lettered (cdc dlq list)", len(dead))
		}
		fr := make([]DocRef, 0, len(r.before))
		for ref := range r.before {
			fr = append(fr, ref)
		}
		now, err := Versions(ctx, r.pool, fr)
		if err != nil {
			return err
		}
		// A range that runs to now holds every change of the repaired
		// documents up to now (later ones stream): they are current even
		// when the guard had a newer position (a snapshot's, which is not
		// in the oplog). A range with an explicit end may stop before a
		// document's newest change.
		var behind []DocRef
		for _, ref := range fr {
			if v, ok := now[ref]; ok && v.Compare(r.before[ref]) < 0 && r.cfg.To != (event.ClusterTime{}) {
				behind = append(behind, ref)
			}
		}
		sortRefs(behind)
		r.rep.Note("%d lost rows re-published with --force", len(fr))
		if len(behind) > 0 {
			r.rep.Errors += int64(len(behind))
			r.rep.Note("%d documents ended at an older version than had been applied (the range stops before their newest change): "+
				"bring them to their current state with cdc replay ids --collection %s --ids %s ...", len(behind), behind[0].Collection, behind[0].Key)
		}
	}
	lost, err := FindLost(ctx, r.pool, r.set, refs)
	if err != nil {
		return err
	}
	if len(lost) > 0 {
		if r.cfg.DryRun {
			r.rep.Note("%d documents in the range have rows missing in Postgres while the version guard holds their version: --force restores them", len(lost))
		} else {
			r.rep.Errors += int64(len(lost))
			r.rep.Note("%d documents in the range have no row in Postgres although the version guard holds their version (e.g. %s %s): "+
				"re-run with --force, or use cdc replay ids", len(lost), lost[0].Collection, lost[0].Key)
		}
	}
	if r.cfg.DryRun {
		r.rep.Note("would publish %d changes (ids of the tailer: copies JetStream or Postgres already has change nothing)", r.rep.Read)
	}
	return nil
}
