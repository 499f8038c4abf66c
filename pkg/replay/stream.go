package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/transform"
)

// StreamConfig configures a stream replay.
type StreamConfig struct {
	// Streams names the stream and its subjects.
	Streams bus.StreamsConfig
	// Database and Collections select subjects; no Collections: all.
	Database    string
	Collections []string
	// FromSeq is the first stream sequence to re-apply; or Since, the
	// first message stored at or after that time.
	FromSeq uint64
	Since   time.Time
	// ToSeq is the last sequence; 0: the stream's last at the start.
	ToSeq uint64
	// BatchSize is the most events per Postgres transaction (a Mongo
	// transaction is never split).
	BatchSize int
	// Force forgets the versions of lost rows (see the package doc) in
	// the transaction that re-applies their events.
	Force bool
	// Unparked is sink.unparked_collections.
	Unparked []string
	// DryRun reads and reports what would be applied.
	DryRun bool
}

// StreamRangeError: the requested start is no longer in the stream.
type StreamRangeError struct {
	// From is the requested sequence, or 0 when Since was requested.
	From, First uint64
	Since       time.Time
	FirstTime   time.Time
}

func (e *StreamRangeError) Error() string {
	what := fmt.Sprintf("sequence %d", e.From)
	if e.From == 0 {
		what = "messages from " + e.Since.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%v: JetStream no longer holds %s; the first message it retains is %d (stored %s). "+
		"Replay from there, and recover the part before it from the oplog (cdc replay oplog) or with a snapshot",
		ErrBadRange, what, e.First, e.FirstTime.UTC().Format(time.RFC3339))
}

func (e *StreamRangeError) Unwrap() error { return ErrBadRange }

// Stream re-applies the events the stream retains in the configured range
// to Postgres through an ordered (ephemeral) consumer and an Applier that
// records no consumer position: the live sink's consumer and its
// position in cdc.sink_positions are never touched. Events the version
// guard finds applied are skipped; lost rows are restored with Force and
// reported as errors without it.
func Stream(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, set *transform.Set, cfg StreamConfig, log *zap.Logger) (*Report, error) {
	rep := &Report{Command: "replay stream", DryRun: cfg.DryRun}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	st, err := js.Stream(ctx, cfg.Streams.Stream)
	if err != nil {
		return rep, fmt.Errorf("stream %s: %w", cfg.Streams.Stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return rep, fmt.Errorf("stream %s info: %w", cfg.Streams.Stream, err)
	}
	state := info.State
	if state.Msgs == 0 {
		rep.Note("stream %s is empty: nothing to replay", cfg.Streams.Stream)
		return rep, nil
	}
	to := cfg.ToSeq
	switch {
	case to == 0:
		to = state.LastSeq
	case to > state.LastSeq:
		return rep, fmt.Errorf("%w: --to-seq %d is after the stream's last sequence %d", ErrBadRange, to, state.LastSeq)
	}
	occ := jetstream.OrderedConsumerConfig{InactiveThreshold: time.Minute, NamePrefix: "cdc_replay"}
	for _, c := range cfg.Collections {
		occ.FilterSubjects = append(occ.FilterSubjects, cfg.Streams.Subject(cfg.Database, c))
	}
	if cfg.Since.IsZero() {
		switch {
		case cfg.FromSeq == 0:
			return rep, fmt.Errorf("%w: give --from-seq or --since", ErrBadRange)
		case cfg.FromSeq < state.FirstSeq:
			return rep, &StreamRangeError{From: cfg.FromSeq, First: state.FirstSeq, FirstTime: state.FirstTime}
		case cfg.FromSeq > to:
			return rep, fmt.Errorf("%w: --from-seq %d is after the last sequence of the range %d", ErrBadRange, cfg.FromSeq, to)
		}
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cfg.FromSeq
		rep.Note("range: stream %s sequences %d..%d", cfg.Streams.Stream, cfg.FromSeq, to)
	} else {
		if cfg.Since.Before(state.FirstTime) && state.FirstSeq > 1 {
			// Messages were removed (age, size): some after Since may be gone.
			return rep, &StreamRangeError{Since: cfg.Since, First: state.FirstSeq, FirstTime: state.FirstTime}
		}
		since := cfg.Since
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
		rep.Note("range: stream %s messages stored since %s, up to sequence %d", cfg.Streams.Stream, since.UTC().Format(time.RFC3339), to)
	}
	cons, err := st.OrderedConsumer(ctx, occ)
	if err != nil {
		return rep, fmt.Errorf("ordered consumer on %s: %w", cfg.Streams.Stream, err)
	}
	r := &streamReplay{js: js, pool: pool, set: set, cfg: cfg, log: log, rep: rep,
		applier: sink.NewApplier(pool, set, "", cfg.Streams.Stream), touched: map[DocRef]bool{}, before: map[DocRef]event.Position{}}
	r.applier.SetUnparked(cfg.Unparked)
	err = r.consume(ctx, cons, to)
	if ci := cons.CachedInfo(); ci != nil {
		// Ephemeral anyway (inactive threshold); remove it now.
		_ = st.DeleteConsumer(context.WithoutCancel(ctx), ci.Name)
	}
	if err != nil {
		rep.Errors++
		return rep, err
	}
	return rep, r.finish(ctx)
}

type streamReplay struct {
	js      jetstream.JetStream
	pool    *pgxpool.Pool
	set     *transform.Set
	cfg     StreamConfig
	log     *zap.Logger
	rep     *Report
	applier *sink.Applier
	// touched are the documents the replay carried events of.
	touched map[DocRef]bool
	// before are the forgotten documents' versions (Force).
	before map[DocRef]event.Position
	// pending is the batch being built; open its incomplete transactions.
	pending []sink.Raw
	refs    []DocRef
	open    map[string]bool
	// retry holds batches with events that waited for a parent (policy
	// wait): they are applied again once the rest is, since the parent may
	// come later in the range.
	retry     []sink.Raw
	retryRefs []DocRef
}

func (r *streamReplay) consume(ctx context.Context, cons jetstream.Consumer, to uint64) error {
	r.open = map[string]bool{}
	for {
		batch, err := cons.Fetch(r.cfg.BatchSize, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		n, end := 0, false
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("message metadata: %w", err)
			}
			seq := meta.Sequence.Stream
			if seq > to {
				end = true
				break
			}
			// Every change-stream message decodes through
			// bus.EventBytes (a large event's envelope is in the object
			// store); an unreadable object is dead-lettered by the
			// applier with its reason, an unreachable store ends the
			// replay (run it again).
			data, err := bus.EventBytes(ctx, r.js, msg.Headers(), msg.Data())
			switch {
			case err == nil:
				r.add(seq, data, nil)
			case bus.IsLargePoison(err):
				r.add(seq, msg.Data(), err)
			default:
				return fmt.Errorf("sequence %d: %w", seq, err)
			}
			if seq == to || meta.NumPending == 0 {
				end = true
				break
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && !end {
			return fmt.Errorf("fetch: %w", err)
		}
		if len(r.pending) >= r.cfg.BatchSize && len(r.open) == 0 {
			if err := r.flush(ctx); err != nil {
				return err
			}
		}
		if end || n == 0 {
			if err := r.flush(ctx); err != nil {
				return err
			}
			return r.retryWaiting(ctx)
		}
	}
}

// add takes one message into the pending batch: data is its envelope,
// or with lerr set the body of a large event's pointer whose object could
// not be read.
func (r *streamReplay) add(seq uint64, data []byte, lerr error) {
	r.rep.Read++
	data = append([]byte(nil), data...)
	r.pending = append(r.pending, sink.Raw{Seq: seq, Data: data, Err: lerr})
	ev, err := event.Unmarshal(data)
	if err != nil {
		return // the applier dead-letters it with the reason
	}
	r.rep.AddCollection(ev.Source.Coll, 1)
	if t := ev.Source.Txn; t != nil {
		if t.Last {
			delete(r.open, t.ID())
		} else {
			r.open[t.ID()] = true
		}
	}
	if key, err := ev.DocKey(); err == nil {
		ref := DocRef{Collection: ev.Source.Coll, Key: key}
		r.refs = append(r.refs, ref)
		r.touched[ref] = true
	}
}

// flush applies the pending batch in one Postgres transaction.
func (r *streamReplay) flush(ctx context.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	msgs, refs := r.pending, r.refs
	r.pending, r.refs = nil, nil
	if r.cfg.DryRun {
		return r.plan(ctx, msgs, refs)
	}
	res, err := r.apply(ctx, msgs, refs)
	if err != nil {
		return err
	}
	r.count(res, msgs)
	if res.Waiting > 0 {
		r.retry = append(r.retry, msgs...)
		r.retryRefs = append(r.retryRefs, refs...)
	}
	return nil
}

// count adds a batch's outcome to the report.
func (r *streamReplay) count(res sink.Result, msgs []sink.Raw) {
	r.rep.Applied += int64(res.Applied)
	r.rep.Skipped += int64(res.Skipped)
	r.rep.DeadLettered += int64(res.DeadLettered)
	if res.DeadLettered > 0 {
		r.rep.Errors += int64(res.DeadLettered)
		r.rep.Note("sequences %d..%d: %d events dead-lettered (cdc dlq list)", msgs[0].Seq, msgs[len(msgs)-1].Seq, res.DeadLettered)
	}
	if res.Incomplete > 0 {
		r.rep.Errors += int64(res.Incomplete)
		r.rep.Note("%d events of Mongo transactions cut by the range were not applied (a transaction applies whole or not at all): widen the range", res.Incomplete)
	}
}

// retryWaiting re-applies the batches that had events waiting for a
// parent, until none waits or a round makes no progress; what still waits
// is an error.
func (r *streamReplay) retryWaiting(ctx context.Context) error {
	last := -1
	for len(r.retry) > 0 {
		res, err := r.apply(ctx, r.retry, r.retryRefs)
		if err != nil {
			return err
		}
		r.rep.Applied += int64(res.Applied)
		r.rep.DeadLettered += int64(res.DeadLettered)
		r.rep.Errors += int64(res.DeadLettered)
		if res.Waiting == 0 {
			return nil
		}
		if res.Waiting == last {
			r.rep.Errors += int64(res.Waiting)
			r.rep.Note("%d events wait for a parent row that is not in Postgres and did not come in the range (policy wait): not applied", res.Waiting)
			return nil
		}
		last = res.Waiting
	}
	return nil
}

// apply applies msgs in one transaction (Force: forgetting the lost rows
// among refs first, in it), retrying what can be retried.
func (r *streamReplay) apply(ctx context.Context, msgs []sink.Raw, refs []DocRef) (sink.Result, error) {
	var forgotten []Lost
	var before func(pgx.Tx) error
	if r.cfg.Force {
		before = func(tx pgx.Tx) error {
			var err error
			forgotten, err = ForgetLostTx(ctx, tx, r.set, refs)
			return err
		}
	}
	var res sink.Result
	var err error
	for attempt := 0; ; attempt++ {
		res, err = r.applier.ApplyRawWith(ctx, r.set, msgs, before)
		if err == nil || sink.Classify(err) == sink.Fatal || attempt >= 5 || ctx.Err() != nil {
			break
		}
		r.log.Warn("replay batch failed, retrying", zap.Error(err), zap.Int("attempt", attempt+1))
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Duration(500*(attempt+1)) * time.Millisecond):
		}
	}
	if err != nil {
		r.rep.Errors += int64(len(msgs))
		return res, fmt.Errorf("apply sequences %d..%d: %w", msgs[0].Seq, msgs[len(msgs)-1].Seq, err)
	}
	for _, l := range forgotten {
		if _, seen := r.before[l.DocRef]; !seen {
			r.before[l.DocRef] = l.Version
		}
	}
	return res, nil
}

// plan reports what a batch would do: events newer than the stored
// version, and lost rows.
func (r *streamReplay) plan(ctx context.Context, msgs []sink.Raw, refs []DocRef) error {
	vs, err := Versions(ctx, r.pool, refs)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Err != nil {
			r.rep.Errors++
			r.rep.Note("sequence %d: %v", m.Seq, m.Err)
			continue
		}
		ev, err := event.Unmarshal(m.Data)
		if err != nil {
			r.rep.Errors++
			continue
		}
		key, err := ev.DocKey()
		if err != nil {
			r.rep.Errors++
			continue
		}
		if v, ok := vs[DocRef{ev.Source.Coll, key}]; ok && ev.Position().Compare(v) <= 0 {
			r.rep.Skipped++
		} else {
			r.rep.Applied++ // would apply
		}
	}
	return nil
}

// finish checks the touched documents: rows still lost, and (Force)
// documents restored to an older version than the guard had.
func (r *streamReplay) finish(ctx context.Context) error {
	refs := make([]DocRef, 0, len(r.touched))
	for ref := range r.touched {
		refs = append(refs, ref)
	}
	sortRefs(refs)
	lost, err := FindLost(ctx, r.pool, r.set, refs)
	if err != nil {
		return err
	}
	if r.cfg.DryRun {
		if len(lost) > 0 {
			what := "reported as errors; add --force to restore them"
			if r.cfg.Force {
				what = "--force restores them"
			}
			r.rep.Note("%d documents in the range have rows missing in Postgres while the version guard holds their version: %s", len(lost), what)
		}
		r.rep.Note("applied = events newer than the stored version (would apply); skipped = already applied")
		return nil
	}
	if len(lost) > 0 {
		r.rep.Errors += int64(len(lost))
		hint := "re-run with --force to re-apply their events, or use cdc replay ids"
		if r.cfg.Force {
			hint = "their events in the range were not applied (dead-lettered?)"
		}
		r.rep.Note("%d documents still have no row in Postgres although the version guard holds their version (e.g. %s %s): %s",
			len(lost), lost[0].Collection, lost[0].Key, hint)
	}
	if len(r.before) > 0 {
		fr := make([]DocRef, 0, len(r.before))
		for ref := range r.before {
			fr = append(fr, ref)
		}
		sortRefs(fr)
		now, err := Versions(ctx, r.pool, fr)
		if err != nil {
			return err
		}
		var behind []DocRef
		for _, ref := range fr {
			if v, ok := now[ref]; !ok || v.Compare(r.before[ref]) < 0 {
				behind = append(behind, ref)
			}
		}
		r.rep.Note("%d lost rows re-applied (--force)", len(fr)-len(behind))
		if len(behind) > 0 {
			r.rep.Errors += int64(len(behind))
			r.rep.Note("%d re-applied documents ended at an older version than had been applied (the range stops before their newest event): "+
				"bring them to their current state with cdc replay ids --collection %s --ids %s ...", len(behind), behind[0].Collection, behind[0].Key)
		}
	}
	return nil
}
