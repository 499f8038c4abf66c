package tailer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/oplog"
)

// Config configures a Tailer.
type Config struct {
	// Database is the watched database.
	Database string
	// Collections are the replicated collections (filtered server-side).
	Collections []string
	// Start applies when there is no checkpoint.
	Start config.StartPoint
	// BatchSize of change-stream batches.
	BatchSize int32
	// MaxAwait bounds one getMore wait.
	MaxAwait time.Duration
	// MaxInFlight bounds unacknowledged publishes.
	MaxInFlight int
	// CheckpointInterval is how often the checkpoint is saved.
	CheckpointInterval time.Duration
	// PreImages requests fullDocumentBeforeChange: whenAvailable.
	PreImages bool
	// Streams names the subjects.
	Streams bus.StreamsConfig
	// Owner is this tailer's identity in the checkpoint (NewOwner); ""
	// uses NewOwner("").
	Owner string
	// StandbyTakeover is how long a checkpoint written by another tailer
	// must stay unchanged before this one takes it over. It must exceed
	// twice CheckpointInterval and MaxAwait (config validates it).
	// 0 means DefaultStandbyTakeover.
	StandbyTakeover time.Duration
}

// DefaultStandbyTakeover is Config.StandbyTakeover's default.
const DefaultStandbyTakeover = 15 * time.Second

// Metrics receives the tailer's counters; nil-safe no-op by default.
type Metrics interface {
	EventRead(coll string, op event.Op)
	EventPublished(coll string)
	CheckpointSaved(ct event.ClusterTime)
	// Retry counts a restart from the checkpoint after an error.
	Retry()
	// Alive reports that the read loop went round (an event or an idle
	// getMore), or that a standby checked the checkpoint.
	Alive()
	// Standby reports that this tailer stands by (true, with the
	// checkpoint's holder) or writes the checkpoint (false, "").
	Standby(standby bool, holder string)
	// StreamFull reports a publish refused by a full stream (true, once
	// per refused attempt) and the first acknowledgement after it (false).
	StreamFull(full bool)
}

type noMetrics struct{}

func (noMetrics) EventRead(string, event.Op)        {}
func (noMetrics) EventPublished(string)             {}
func (noMetrics) CheckpointSaved(event.ClusterTime) {}
func (noMetrics) Retry()                            {}
func (noMetrics) Alive()                            {}
func (noMetrics) Standby(bool, string)              {}
func (noMetrics) StreamFull(bool)                   {}

// Tailer publishes change events. Create with New; Run blocks. A Tailer
// is not safe for concurrent use: one Run at a time.
type Tailer struct {
	client  *mongo.Client
	js      jetstream.JetStream
	store   CheckpointStore
	cfg     Config
	log     *zap.Logger
	metrics Metrics
	// key names the checkpoint in messages.
	key string
	// clock is injectable for tests.
	clock clock
	// lease is this tailer's side of the fence (Run's goroutine only).
	lease lease
	// full tracks publishes refused by a full stream.
	full fullState
}

// New returns a Tailer. It does no I/O.
func New(client *mongo.Client, js jetstream.JetStream, store CheckpointStore, cfg Config, log *zap.Logger, m Metrics) *Tailer {
	if m == nil {
		m = noMetrics{}
	}
	if cfg.Owner == "" {
		cfg.Owner = NewOwner("")
	}
	if cfg.StandbyTakeover <= 0 {
		cfg.StandbyTakeover = DefaultStandbyTakeover
	}
	key := CheckpointKey(cfg.Database)
	if k, ok := store.(interface{ Key() string }); ok {
		key = k.Key()
	}
	return &Tailer{client: client, js: js, store: store, cfg: cfg, log: log, metrics: m, key: key, clock: realClock{}}
}

// Owner is this tailer's identity in the checkpoint.
func (t *Tailer) Owner() string { return t.cfg.Owner }

// Run tails until ctx is cancelled (returns nil) or a fatal error occurs
// (ErrHistoryLost, a malformed change event). Every other error is logged
// and retried from the last checkpoint with capped exponential backoff;
// meanwhile the checkpoint is rewritten every checkpoint interval, so a
// standby does not mistake a retrying tailer for a dead one.
//
// The checkpoint is the fence between tailers (one writer at a time):
// when another tailer holds it, or takes it over, this one closes its
// change stream and stands by, watching it, until it stays unchanged for
// StandbyTakeover (or is released, deleted or handed off by a snapshot);
// then it takes over and resumes from the stored checkpoint. A checkpoint
// rewritten by a snapshot's hand-off makes it restart from it at once. A
// publish refused by a full stream (bus.ErrStreamFull) is retried the same
// way, logged at error level at most once a minute.
func (t *Tailer) Run(ctx context.Context) error {
	var held *heldError
	for attempt := 0; ; {
		if held != nil {
			if t.standBy(ctx, held) != nil {
				return nil
			}
			held, attempt = nil, 0
		}
		progressed, err := t.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if h, fenced := t.fenced(err); fenced {
			held, attempt = h, 0
			continue
		}
		if IsFatal(err) {
			return err
		}
		full := t.streamFull(err)
		if progressed {
			attempt = 0
		}
		wait := retryDelay(attempt)
		attempt++
		t.metrics.Retry()
		if !full {
			t.log.Warn("tailer error, resuming from the last checkpoint", zap.Error(err), zap.Duration("retry_in", wait), zap.Int("attempt", attempt))
		}
		if err := t.pause(ctx, wait); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			held, _ = t.fenced(err)
		}
	}
}

// retryDelay is capped exponential backoff with full jitter.
func retryDelay(attempt int) time.Duration {
	base := 200 * time.Millisecond << min(attempt, 6)
	base = min(base, 10*time.Second)
	return base/2 + time.Duration(rand.Int64N(int64(base/2)+1))
}

// pending is one published item awaiting its JetStream ack: an event, or
// (ack == nil) a post-batch token that becomes durable once everything
// before it is.
type pending struct {
	ack jetstream.PubAckFuture
	// token is the resume token after this item; nil when the item must
	// not become a checkpoint (an event inside a transaction).
	token bson.Raw
	ct    event.ClusterTime
	coll  string
	isEvt bool
}

// state is one change-stream session's bookkeeping.
type state struct {
	queue    []pending
	durable  *point // newest position whose items are all acked
	lastSave time.Time
	// lost is set once a write found the checkpoint moved: this session
	// writes no more.
	lost bool
	// refused is the first publish JetStream did not acknowledge.
	refused error
	// start is the token the session resumed from; advanced is set once a
	// later one was saved: the session progressed (Mongo and NATS both
	// work), and Run's backoff starts again from its minimum.
	start    bson.Raw
	advanced bool
	events   uint64
	// txns numbers transaction events and holds each transaction's
	// newest one until the next change (or an idle stream) says whether it
	// is the last.
	txns event.TxnSequencer
}

func (t *Tailer) runOnce(ctx context.Context) (progressed bool, err error) {
	cp, err := t.acquire(ctx)
	if err != nil {
		return false, err
	}
	opts := options.ChangeStream().
		SetFullDocument(options.UpdateLookup).
		SetBatchSize(t.cfg.BatchSize).
		SetMaxAwaitTime(t.cfg.MaxAwait)
	if t.cfg.PreImages {
		opts.SetFullDocumentBeforeChange(options.WhenAvailable)
	}
	startDesc := ""
	switch {
	case cp != nil:
		tok, err := cp.ResumeToken()
		if err != nil {
			return false, &FatalError{Err: fmt.Errorf("stored checkpoint is unreadable: %w", err)}
		}
		opts.SetResumeAfter(tok)
		startDesc = "checkpoint " + string(cp.Token)
	case !t.cfg.Start.Now:
		ts := event.ClusterTime{T: t.cfg.Start.T, I: t.cfg.Start.I}.Timestamp()
		opts.SetStartAtOperationTime(&ts)
		startDesc = fmt.Sprintf("cluster time %d.%d", t.cfg.Start.T, t.cfg.Start.I)
	default:
		startDesc = "now"
	}
	pipeline := mongo.Pipeline{{{Key: "$match", Value: bson.D{
		{Key: "ns.coll", Value: bson.D{{Key: "$in", Value: t.cfg.Collections}}},
		{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "update", "replace", "delete", "drop", "rename", "dropDatabase", "invalidate"}}}},
	}}}}
	db := t.client.Database(t.cfg.Database)
	cs, err := db.Watch(ctx, pipeline, opts)
	if err != nil {
		return false, t.classify(err, cp)
	}
	defer cs.Close(context.WithoutCancel(ctx))
	t.log.Info("change stream open", zap.String("database", t.cfg.Database), zap.Strings("collections", t.cfg.Collections), zap.String("start", startDesc))

	st := &state{lastSave: t.clock.Now()}
	if cp != nil {
		st.events = cp.Events
		if tok, err := cp.ResumeToken(); err == nil {
			st.durable = &point{tok: tok, ct: cp.ClusterTime, events: cp.Events}
			st.start = tok
		}
	}
	if cp == nil && t.cfg.Start.Now {
		// Pin "now" at once: a crash before the first event must not move
		// the start point forward past changes made meanwhile.
		if tok := cs.ResumeToken(); tok != nil {
			st.durable = &point{tok: cloneRaw(tok)}
			if err := t.save(ctx, st, false); err != nil {
				return false, err
			}
		}
	}
	defer func() {
		// Flush what is acknowledged, on every exit path; a graceful stop
		// releases the checkpoint to whichever tailer starts next.
		if ferr := t.finish(context.WithoutCancel(ctx), st, ctx.Err() != nil); ferr != nil && err == nil && ctx.Err() == nil {
			err = ferr
		}
		progressed = st.advanced
	}()

	for {
		if ctx.Err() != nil {
			return progressed, nil
		}
		t.metrics.Alive()
		if cs.TryNext(ctx) {
			if err := t.handleChange(st, cs.Current); err != nil {
				return progressed, err
			}
		} else {
			if err := cs.Err(); err != nil {
				if ctx.Err() != nil {
					return progressed, nil
				}
				return progressed, t.classify(err, st.durable.checkpoint())
			}
			// Idle: the transaction held back (if any) is complete, and
			// the post-batch token covers everything scanned.
			if err := t.releaseHeld(st); err != nil {
				return progressed, err
			}
			if tok := cs.ResumeToken(); tok != nil {
				st.queue = append(st.queue, pending{token: cloneRaw(tok)})
			}
		}
		if err := t.drain(ctx, st, false); err != nil {
			return progressed, err
		}
		// Every interval, moved or not: the rewrite is the heartbeat that
		// keeps a standby from taking over.
		if t.clock.Now().Sub(st.lastSave) >= t.cfg.CheckpointInterval {
			if err := t.save(ctx, st, false); err != nil {
				return progressed, err
			}
		}
	}
}

func (t *Tailer) handleChange(st *state, raw bson.Raw) error {
	ev, txn, err := event.FromChange(raw)
	if errors.Is(err, event.ErrNotDataChange) {
		op, _ := raw.Lookup("operationType").StringValueOK()
		coll, _ := raw.Lookup("ns", "coll").StringValueOK()
		t.log.Error("change stream reported a non-document change; documents of this collection may need a re-snapshot",
			zap.String("operation", op), zap.String("database", t.cfg.Database), zap.String("collection", coll))
		if err := t.releaseHeld(st); err != nil {
			return err
		}
		if tok, ok := raw.Lookup("_id").DocumentOK(); ok {
			st.queue = append(st.queue, pending{token: cloneRaw(tok)})
		}
		if op == "invalidate" {
			return fmt.Errorf("change stream invalidated by %s", op)
		}
		return nil
	}
	if err != nil {
		return &FatalError{Err: fmt.Errorf("tailer: %w", err)}
	}
	t.metrics.EventRead(ev.Source.Coll, ev.Op)
	return t.publishAll(st, st.txns.Add(ev, txn, cloneRaw(raw.Lookup("_id").Document())))
}

// releaseHeld publishes the held transaction event as its transaction's
// last.
func (t *Tailer) releaseHeld(st *state) error { return t.publishAll(st, st.txns.Flush()) }

func (t *Tailer) publishAll(st *state, evs []event.Sequenced) error {
	for _, s := range evs {
		if err := t.publish(st, s.Event, s.Token); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tailer) publish(st *state, ev *event.Event, tok bson.Raw) error {
	msg, oversize, err := bus.EventMsg(t.cfg.Streams, ev, t.js.Conn().MaxPayload())
	if err != nil {
		return &FatalError{Err: err}
	}
	if oversize {
		t.log.Error("change too large for the bus: published without its document, the sink will dead-letter it",
			zap.String("event_id", ev.ID), zap.String("collection", ev.Source.Coll), zap.Int64("max_payload", t.js.Conn().MaxPayload()))
	}
	ack, err := t.js.PublishMsgAsync(msg, jetstream.WithExpectStream(t.cfg.Streams.Stream))
	if err != nil {
		return fmt.Errorf("publish %s: %w", ev.ID, err)
	}
	st.queue = append(st.queue, pending{ack: ack, token: tok, ct: ev.Source.ClusterTime, coll: ev.Source.Coll, isEvt: true})
	return nil
}

// drain pops acknowledged items from the head of the queue, advancing the
// durable checkpoint. It blocks while the queue is over MaxInFlight (or,
// with all=true, until the queue is empty). Once a publish was refused,
// nothing after it can become durable: drain returns that refusal again at
// once (an ack future delivers its error only once, so waiting on it again
// would block until ctx ends).
func (t *Tailer) drain(ctx context.Context, st *state, all bool) error {
	if st.refused != nil {
		return st.refused
	}
	for len(st.queue) > 0 {
		head := st.queue[0]
		if head.ack != nil {
			mustWait := all || len(st.queue) > t.cfg.MaxInFlight
			if mustWait {
				select {
				case <-head.ack.Ok():
				case err := <-head.ack.Err():
					st.refused = t.refused(ctx, head.ack, err)
					return st.refused
				case <-ctx.Done():
					return ctx.Err()
				}
			} else {
				select {
				case <-head.ack.Ok():
				case err := <-head.ack.Err():
					st.refused = t.refused(ctx, head.ack, err)
					return st.refused
				default:
					return nil
				}
			}
			t.roomAgain()
			st.events++
			t.metrics.EventPublished(head.coll)
		}
		st.queue = st.queue[1:]
		if head.token != nil {
			ct := head.ct
			if !head.isEvt && st.durable != nil {
				ct = st.durable.ct
			}
			// Only the raw token here: rendering it is left to save().
			st.durable = &point{tok: head.token, ct: ct, events: st.events}
		}
	}
	return nil
}

// point is a resume position whose events are all acknowledged.
type point struct {
	tok    bson.Raw
	ct     event.ClusterTime
	events uint64
}

// checkpoint renders p for storage; nil for a nil point.
func (p *point) checkpoint() *Checkpoint {
	if p == nil {
		return nil
	}
	js, err := bson.MarshalExtJSON(p.tok, true, false)
	if err != nil {
		js = []byte("null")
	}
	return &Checkpoint{V: CheckpointVersion, Token: json.RawMessage(js), ClusterTime: p.ct, Events: p.events}
}

// save writes the durable position (again, when it has not moved: the
// heartbeat), checked against the lease. A session that started without a
// checkpoint creates the first one, never overwrites one, so a checkpoint a
// snapshot's hand-off wrote meanwhile wins and this session restarts from
// it. release marks a graceful stop's last write.
func (t *Tailer) save(ctx context.Context, st *state, release bool) error {
	st.lastSave = t.clock.Now()
	if st.durable == nil || st.lost {
		return nil
	}
	cp := st.durable.checkpoint()
	cp.Released = release
	if err := t.write(ctx, cp); err != nil {
		if errors.Is(err, ErrCheckpointMoved) {
			st.lost = true
		}
		return err
	}
	if !bytes.Equal(st.start, st.durable.tok) {
		st.advanced = true
	}
	// The token's own time moves on an idle stream too (post-batch
	// tokens); the last event's time does not.
	ct := cp.ClusterTime
	if tt, ok := oplog.TokenTime(st.durable.tok); ok {
		ct = tt
	}
	t.metrics.CheckpointSaved(ct)
	return nil
}

// finish waits (bounded) for outstanding acks and saves what is durable;
// release marks the checkpoint free for the next tailer (graceful stop).
func (t *Tailer) finish(ctx context.Context, st *state, release bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A held transaction event is not released: its transaction may be
	// incomplete, and the checkpoint stays before it.
	derr := t.drain(ctx, st, true)
	if err := t.save(ctx, st, release); err != nil {
		return err
	}
	return derr
}

func (t *Tailer) classify(err error, cp *Checkpoint) error {
	if isHistoryLost(err) {
		where := "the configured start point"
		if cp != nil {
			where = fmt.Sprintf("checkpoint at cluster time %s (%s)", cp.ClusterTime, string(cp.Token))
		}
		return &HistoryLostError{Database: t.cfg.Database, Collections: t.cfg.Collections, Checkpoint: where, Cause: err}
	}
	return fmt.Errorf("change stream on %s: %w", t.cfg.Database, err)
}

func cloneRaw(r bson.Raw) bson.Raw {
	if r == nil {
		return nil
	}
	out := make(bson.Raw, len(r))
	copy(out, r)
	return out
}
