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

	"github.com/amanat/cdc/pkg/backoff"
	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/report"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/transform"
)

// StreamConfig configures a stream replay.
type StreamConfig struct {
	// Streams names the stream and its subjects, and the sink lanes.
	Streams bus.StreamsConfig
	// Lane is the sink lane whose stream to replay
	// (Streams.LaneStream(Lane)). "" without lanes: the default stream;
	// "" with lanes: every lane, which only Since can express (a sequence
	// belongs to one lane's stream).
	Lane string
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
	// Stream is the stream replayed.
	Stream string
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
	return fmt.Sprintf("%v: JetStream stream %s no longer holds %s; the first message it retains is %d (stored %s). "+
		"Replay from there, and recover the part before it from the oplog (cdc replay oplog) or with a snapshot",
		ErrBadRange, e.Stream, what, e.First, e.FirstTime.UTC().Format(time.RFC3339))
}

func (e *StreamRangeError) Unwrap() error { return ErrBadRange }

// Stream re-applies the events the stream retains in the configured range
// to Postgres through an ordered (ephemeral) consumer and an Applier that
// records no consumer position: the live sink's consumer and its
// position in cdc.sink_positions are never touched. Events the version
// guard finds applied are skipped; lost rows are restored with Force and
// reported as errors without it.
//
// With sink lanes it reads the lanes StreamLanes names one after another,
// each through its own stream and an Applier of that stream (its dead
// letters name it), into one replay: the events that waited for a parent
// are retried after every lane was read (a parent may come from another
// lane), and the lost-row check runs once over everything.
func Stream(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, set *transform.Set, cfg StreamConfig, log *zap.Logger) (*report.Report, error) {
	rep := &report.Report{Command: "replay stream", DryRun: cfg.DryRun}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	lanes, err := StreamLanes(cfg)
	if err != nil {
		return rep, err
	}
	r := &streamReplay{js: js, pool: pool, set: set, cfg: cfg, log: log, rep: rep,
		touched: map[DocRef]bool{}, before: map[DocRef]event.Position{}}
	read := false
	for _, lane := range lanes {
		ok, err := r.lane(ctx, lane)
		if err != nil {
			return rep, err
		}
		read = read || ok
	}
	if !read {
		return rep, nil
	}
	if err := r.retryWaiting(ctx); err != nil {
		rep.Errors++
		return rep, err
	}
	return rep, r.finish(ctx)
}

// lane replays lane's stream ("" the default stream) into r; ok is false
// when it had nothing to read.
func (r *streamReplay) lane(ctx context.Context, lane string) (ok bool, err error) {
	cfg, rep := r.cfg, r.rep
	name := cfg.Streams.LaneStream(lane)
	st, err := r.js.Stream(ctx, name)
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("stream %s info: %w", name, err)
	}
	state := info.State
	if state.Msgs == 0 {
		rep.Note("stream %s is empty: nothing to replay", name)
		return false, nil
	}
	var filters []string
	for _, c := range cfg.Collections {
		filters = append(filters, cfg.Streams.LaneSubject(lane, cfg.Database, c))
	}
	if lane != "" && cfg.Lane == "" && len(filters) > 0 {
		// Every lane is read for the selected collections' events in
		// transactions routed to it; one that holds none is skipped (an
		// ordered consumer would wait for a message to end on).
		n, err := subjectMessages(ctx, st, filters)
		if err != nil {
			return false, fmt.Errorf("stream %s info: %w", name, err)
		}
		if n == 0 {
			rep.Note("stream %s holds no events of the selected collections: nothing to replay", name)
			return false, nil
		}
	}
	to := cfg.ToSeq
	switch {
	case to == 0:
		to = state.LastSeq
	case to > state.LastSeq:
		return false, fmt.Errorf("%w: --to-seq %d is after the last sequence %d of stream %s", ErrBadRange, to, state.LastSeq, name)
	}
	occ := jetstream.OrderedConsumerConfig{InactiveThreshold: time.Minute, NamePrefix: "cdc_replay", FilterSubjects: filters}
	if cfg.Since.IsZero() {
		switch {
		case cfg.FromSeq == 0:
			return false, fmt.Errorf("%w: give --from-seq or --since", ErrBadRange)
		case cfg.FromSeq < state.FirstSeq:
			return false, &StreamRangeError{Stream: name, From: cfg.FromSeq, First: state.FirstSeq, FirstTime: state.FirstTime}
		case cfg.FromSeq > to:
			return false, fmt.Errorf("%w: --from-seq %d is after the last sequence of the range %d", ErrBadRange, cfg.FromSeq, to)
		}
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cfg.FromSeq
		rep.Note("range: stream %s sequences %d..%d", name, cfg.FromSeq, to)
	} else {
		if cfg.Since.Before(state.FirstTime) && state.FirstSeq > 1 {
			// Messages were removed (age, size): some after Since may be gone.
			return false, &StreamRangeError{Stream: name, Since: cfg.Since, First: state.FirstSeq, FirstTime: state.FirstTime}
		}
		since := cfg.Since
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
		rep.Note("range: stream %s messages stored since %s, up to sequence %d", name, since.UTC().Format(time.RFC3339), to)
	}
	cons, err := st.OrderedConsumer(ctx, occ)
	if err != nil {
		return false, fmt.Errorf("ordered consumer on %s: %w", name, err)
	}
	r.stream, r.qualify = name, lane != ""
	r.applier = sink.NewApplier(r.pool, r.set, "", name)
	r.applier.SetUnparked(cfg.Unparked)
	err = r.consume(ctx, cons, to)
	if ci := cons.CachedInfo(); ci != nil {
		// Ephemeral anyway (inactive threshold); remove it now.
		_ = st.DeleteConsumer(context.WithoutCancel(ctx), ci.Name)
	}
	if err != nil {
		rep.Errors++
		return true, err
	}
	return true, nil
}

// subjectMessages counts the messages st holds on subjects.
func subjectMessages(ctx context.Context, st jetstream.Stream, subjects []string) (uint64, error) {
	var n uint64
	for _, s := range subjects {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(s))
		if err != nil {
			return 0, err
		}
		for _, c := range info.State.Subjects {
			n += c
		}
	}
	return n, nil
}

type streamReplay struct {
	js   jetstream.JetStream
	pool *pgxpool.Pool
	set  *transform.Set
	cfg  StreamConfig
	log  *zap.Logger
	rep  *report.Report
	// stream is the stream being read and applier applies its messages
	// (its dead letters name the stream); qualify: notes name it (lanes).
	stream  string
	qualify bool
	applier *sink.Applier
	// touched are the documents the replay carried events of.
	touched map[DocRef]bool
	// before are the forgotten documents' versions (Force).
	before map[DocRef]event.Position
	// pending is the batch being built; open its incomplete transactions.
	pending []sink.Raw
	refs    []DocRef
	open    map[string]bool
	// retry holds, per stream read, the batches with events that waited
	// for a parent (policy wait): they are applied again once every
	// stream is read, since the parent may come later in the range or
	// from another lane.
	retry []*waiting
}

// waiting are the batches of one stream with events that waited for a
// parent, and the applier of that stream.
type waiting struct {
	stream  string
	applier *sink.Applier
	msgs    []sink.Raw
	refs    []DocRef
}

// at names the stream in a note about sequences when lanes make a
// sequence ambiguous ("" without lanes).
func (r *streamReplay) at(stream string) string {
	if !r.qualify {
		return ""
	}
	return "stream " + stream + " "
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
			return r.flush(ctx)
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
	res, err := r.apply(ctx, r.applier, r.stream, msgs, refs)
	if err != nil {
		return err
	}
	r.count(res, msgs)
	if res.Waiting > 0 {
		if n := len(r.retry); n == 0 || r.retry[n-1].stream != r.stream {
			r.retry = append(r.retry, &waiting{stream: r.stream, applier: r.applier})
		}
		w := r.retry[len(r.retry)-1]
		w.msgs = append(w.msgs, msgs...)
		w.refs = append(w.refs, refs...)
	}
	return nil
}

// count adds a batch's outcome to the report.
func (r *streamReplay) count(res sink.Result, msgs []sink.Raw) {
	r.rep.Applied += int64(res.Applied)
	r.rep.Skipped += int64(res.Skipped)
	r.rep.DeadLettered += int64(res.DeadLettered)
	r.rep.Violations += int64(res.Violations)
	if res.DeadLettered > 0 {
		r.rep.Errors += int64(res.DeadLettered)
		r.rep.Note("%ssequences %d..%d: %d events dead-lettered (cdc dlq list)", r.at(r.stream), msgs[0].Seq, msgs[len(msgs)-1].Seq, res.DeadLettered)
	}
	if res.Incomplete > 0 {
		r.rep.Errors += int64(res.Incomplete)
		r.rep.Note("%d events of Mongo transactions cut by the range were not applied (a transaction applies whole or not at all): widen the range", res.Incomplete)
	}
}

// retryWaiting re-applies the batches that had events waiting for a
// parent, after every stream was read, until none waits or a round makes
// no progress; what still waits is an error. A round applies each
// stream's batches in one transaction with that stream's applier (a dead
// letter names the stream its sequence belongs to), in the order the
// streams were read; a parent applied by one stream's retry lets the
// next round apply its children from another.
func (r *streamReplay) retryWaiting(ctx context.Context) error {
	last := -1
	for len(r.retry) > 0 {
		still, left := 0, r.retry[:0]
		for _, w := range r.retry {
			res, err := r.apply(ctx, w.applier, w.stream, w.msgs, w.refs)
			if err != nil {
				return err
			}
			r.rep.Applied += int64(res.Applied)
			r.rep.DeadLettered += int64(res.DeadLettered)
			r.rep.Violations += int64(res.Violations)
			r.rep.Errors += int64(res.DeadLettered)
			if res.Waiting > 0 {
				still += res.Waiting
				left = append(left, w)
			}
		}
		r.retry = left
		if still == 0 {
			return nil
		}
		if still == last {
			r.rep.Errors += int64(still)
			r.rep.Note("%d events wait for a parent row that is not in Postgres and did not come in the range (policy wait): not applied", still)
			return nil
		}
		last = still
	}
	return nil
}

// A replay batch that fails with a retryable error (Postgres restarting, a
// serialization failure) is tried again applyRetries times, waiting
// 0.5 s, 1 s, 2 s, 4 s, 5 s (with jitter) in between: an operator's
// command rides out a short outage but does not hang on a long one.
const applyRetries = 5

var applyBackoff = backoff.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.5}

// apply applies msgs, messages of stream, in one transaction through a
// (Force: forgetting the lost rows among refs first, in it), retrying
// what can be retried.
func (r *streamReplay) apply(ctx context.Context, a *sink.Applier, stream string, msgs []sink.Raw, refs []DocRef) (sink.Result, error) {
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
	retry := backoff.New(applyBackoff)
	for {
		b := sink.NewBatch(r.set, msgs) // afresh each attempt: Apply marks its events
		b.Before = before
		res, err = a.Apply(ctx, b)
		if err == nil || sink.Classify(err) == fault.Fatal || retry.Attempt() >= applyRetries || ctx.Err() != nil {
			break
		}
		wait := retry.Next()
		r.log.Warn("replay batch failed, retrying", zap.Error(err), zap.Int("attempt", retry.Attempt()), zap.Duration("wait", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		case <-t.C:
		}
	}
	if err != nil {
		r.rep.Errors += int64(len(msgs))
		return res, fmt.Errorf("apply %ssequences %d..%d: %w", r.at(stream), msgs[0].Seq, msgs[len(msgs)-1].Seq, err)
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
			r.rep.Note("%ssequence %d: %v", r.at(r.stream), m.Seq, m.Err)
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
