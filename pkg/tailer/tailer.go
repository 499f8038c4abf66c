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
}

// Metrics receives the tailer's counters; nil-safe no-op by default.
type Metrics interface {
	EventRead(coll string, op event.Op)
	EventPublished(coll string)
	CheckpointSaved(ct event.ClusterTime)
	// Retry counts a restart from the checkpoint after an error.
	Retry()
	// Alive reports that the read loop went round (an event or an idle
	// getMore).
	Alive()
}

type noMetrics struct{}

func (noMetrics) EventRead(string, event.Op)        {}
func (noMetrics) EventPublished(string)             {}
func (noMetrics) CheckpointSaved(event.ClusterTime) {}
func (noMetrics) Retry()                            {}
func (noMetrics) Alive()                            {}

// Tailer publishes change events. Create with New; Run blocks.
type Tailer struct {
	client  *mongo.Client
	js      jetstream.JetStream
	store   CheckpointStore
	cfg     Config
	log     *zap.Logger
	metrics Metrics
	// now is injectable for tests.
	now func() time.Time
}

// New returns a Tailer. It does no I/O.
func New(client *mongo.Client, js jetstream.JetStream, store CheckpointStore, cfg Config, log *zap.Logger, m Metrics) *Tailer {
	if m == nil {
		m = noMetrics{}
	}
	return &Tailer{client: client, js: js, store: store, cfg: cfg, log: log, metrics: m, now: time.Now}
}

// Run tails until ctx is cancelled (returns nil) or a fatal error occurs
// (ErrHistoryLost, a malformed change event). Every other error is logged
// and retried from the last checkpoint with capped exponential backoff.
func (t *Tailer) Run(ctx context.Context) error {
	for attempt := 0; ; {
		progressed, err := t.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if IsFatal(err) {
			return err
		}
		if progressed {
			attempt = 0
		}
		wait := retryDelay(attempt)
		attempt++
		t.metrics.Retry()
		t.log.Warn("tailer error, resuming from the last checkpoint", zap.Error(err), zap.Duration("retry_in", wait), zap.Int("attempt", attempt))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
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
	durable  *point   // newest position whose items are all acked
	saved    bson.Raw // token of the last checkpoint written to the store
	lastSave time.Time
	events   uint64
	// txns numbers transaction events and holds each transaction's
	// newest one until the next change (or an idle stream) says whether it
	// is the last.
	txns event.TxnSequencer
}

func (t *Tailer) runOnce(ctx context.Context) (progressed bool, err error) {
	cp, err := t.store.Load(ctx)
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

	st := &state{}
	if cp != nil {
		st.events = cp.Events
		if tok, err := cp.ResumeToken(); err == nil {
			st.saved = tok
			st.durable = &point{tok: tok, ct: cp.ClusterTime, events: cp.Events}
		}
	}
	if cp == nil && t.cfg.Start.Now {
		// Pin "now" at once: a crash before the first event must not move
		// the start point forward past changes made meanwhile.
		if tok := cs.ResumeToken(); tok != nil {
			st.durable = &point{tok: cloneRaw(tok)}
			if err := t.save(ctx, st); err != nil {
				return false, err
			}
		}
	}
	defer func() {
		// Flush what is acknowledged, on every exit path.
		if ferr := t.finish(context.WithoutCancel(ctx), st); ferr != nil && err == nil && ctx.Err() == nil {
			err = ferr
		}
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
			progressed = true
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
		if t.now().Sub(st.lastSave) >= t.cfg.CheckpointInterval {
			if err := t.save(ctx, st); err != nil {
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
// with all=true, until the queue is empty).
func (t *Tailer) drain(ctx context.Context, st *state, all bool) error {
	for len(st.queue) > 0 {
		head := st.queue[0]
		if head.ack != nil {
			mustWait := all || len(st.queue) > t.cfg.MaxInFlight
			if mustWait {
				select {
				case <-head.ack.Ok():
				case err := <-head.ack.Err():
					return fmt.Errorf("publish not acknowledged: %w", err)
				case <-ctx.Done():
					return ctx.Err()
				}
			} else {
				select {
				case <-head.ack.Ok():
				case err := <-head.ack.Err():
					return fmt.Errorf("publish not acknowledged: %w", err)
				default:
					return nil
				}
			}
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

func (t *Tailer) save(ctx context.Context, st *state) error {
	st.lastSave = t.now()
	if st.durable == nil || bytes.Equal(st.saved, st.durable.tok) {
		return nil
	}
	cp := st.durable.checkpoint()
	cp.UpdatedAt = t.now().UTC()
	save := t.store.Save
	if st.saved == nil {
		// This session started without a checkpoint: the first one is
		// created, never overwritten, so a checkpoint a snapshot's
		// hand-off wrote meanwhile wins and this session restarts from it.
		save = t.store.Create
	}
	if err := save(ctx, cp); err != nil {
		if errors.Is(err, ErrCheckpointExists) {
			return fmt.Errorf("%w: restarting from it", err)
		}
		return err
	}
	st.saved = st.durable.tok
	// The token's own time moves on an idle stream too (post-batch
	// tokens); the last event's time does not.
	ct := cp.ClusterTime
	if tt, ok := oplog.TokenTime(st.durable.tok); ok {
		ct = tt
	}
	t.metrics.CheckpointSaved(ct)
	return nil
}

// finish waits (bounded) for outstanding acks and saves what is durable.
func (t *Tailer) finish(ctx context.Context, st *state) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A held transaction event is not released: its transaction may be
	// incomplete, and the checkpoint stays before it.
	derr := t.drain(ctx, st, true)
	if err := t.save(ctx, st); err != nil {
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
