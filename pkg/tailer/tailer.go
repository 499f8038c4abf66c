package tailer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/backoff"
	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
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
	// MaxInFlightBytes bounds the bytes of unacknowledged publishes (the
	// nats client keeps each message until its acknowledgement); 0: no
	// bound besides MaxInFlight. From memory_limit (config.Budget).
	MaxInFlightBytes int64
	// CheckpointInterval is how often the checkpoint is saved.
	CheckpointInterval time.Duration
	// PreImages requests fullDocumentBeforeChange: whenAvailable; the
	// collections must have changeStreamPreAndPostImages (checked at
	// start).
	PreImages bool
	// FullDocument is how updates carry the document: post_image
	// (fullDocument: required), when_available or update_lookup. "" is
	// update_lookup; config defaults to post_image. The image modes need
	// changeStreamPreAndPostImages on every collection (checked at start).
	FullDocument FullDocumentMode
	// FailingAfter is how long retried errors may last before the tailer
	// reports itself failing (unready, error log, metric). 0 means
	// DefaultFailingAfter.
	FailingAfter time.Duration
	// Covered, when set, tells whether a complete snapshot reloaded
	// collections after a lifecycle event (drop, rename, dropDatabase):
	// then the tailer passes the event instead of stopping at it.
	Covered CoveredFunc
	// Streams names the subjects.
	Streams bus.StreamsConfig
	// Owner is this tailer's identity in the checkpoint
	// (checkpoint.NewOwner); "" uses checkpoint.NewOwner("").
	Owner string
	// StandbyTakeover is how long a checkpoint written by another tailer
	// must stay unchanged before this one takes it over. It must exceed
	// twice CheckpointInterval and MaxAwait (config validates it).
	// 0 means DefaultStandbyTakeover. The holder's own lease is shorter by
	// a safety margin (lease.go, fence.go): it stops publishing before any
	// standby may take over.
	StandbyTakeover time.Duration
	// LayoutCheck is how often, with lanes, the lane layout stamped on the
	// streams is compared with Streams' (0: DefaultLayoutCheck).
	LayoutCheck time.Duration
	// Hooks are test hooks into the publish path (zero: none).
	Hooks Hooks
}

// DefaultStandbyTakeover is Config.StandbyTakeover's default.
const DefaultStandbyTakeover = 10 * time.Second

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
	// Failing reports since when retried errors have lasted (zero: the
	// tailer works), whether that is past Config.FailingAfter, and the
	// last error.
	Failing(since time.Time, failing bool, cause string)
	// Lease reports whether this tailer holds a valid lease on the
	// checkpoint (true, with since when its tenure began) or not (false,
	// zero: standing by, deposed, lapsed or released).
	Lease(held bool, since time.Time)
	// TookOver reports a takeover this tailer made (lease.go).
	TookOver(tk checkpoint.Takeover)
	// LeaseLapsed reports that this tailer's lease ran out before it was
	// renewed: it publishes nothing until a revision-checked write
	// succeeds.
	LeaseLapsed()
}

type noMetrics struct{}

func (noMetrics) EventRead(string, event.Op)        {}
func (noMetrics) EventPublished(string)             {}
func (noMetrics) CheckpointSaved(event.ClusterTime) {}
func (noMetrics) Retry()                            {}
func (noMetrics) Alive()                            {}
func (noMetrics) Standby(bool, string)              {}
func (noMetrics) StreamFull(bool)                   {}
func (noMetrics) Failing(time.Time, bool, string)   {}
func (noMetrics) Lease(bool, time.Time)             {}
func (noMetrics) TookOver(checkpoint.Takeover)      {}
func (noMetrics) LeaseLapsed()                      {}

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
	// fail tracks retried errors (failing.go).
	fail failState
	// src is what the preflight learned; nil until it passed.
	src *source
}

// New returns a Tailer. It does no I/O.
func New(client *mongo.Client, js jetstream.JetStream, store CheckpointStore, cfg Config, log *zap.Logger, m Metrics) *Tailer {
	if m == nil {
		m = noMetrics{}
	}
	if cfg.Owner == "" {
		cfg.Owner = checkpoint.NewOwner("")
	}
	if cfg.StandbyTakeover <= 0 {
		cfg.StandbyTakeover = DefaultStandbyTakeover
	}
	if cfg.FailingAfter <= 0 {
		cfg.FailingAfter = DefaultFailingAfter
	}
	key := checkpoint.Key(cfg.Database)
	if k, ok := store.(interface{ Key() string }); ok {
		key = k.Key()
	}
	return &Tailer{client: client, js: js, store: store, cfg: cfg, log: log, metrics: m, key: key, clock: realClock{}}
}

// Owner is this tailer's identity in the checkpoint.
func (t *Tailer) Owner() string { return t.cfg.Owner }

// Run tails until ctx is cancelled (returns nil) or a fatal error occurs
// (Classify: a lifecycle event (*LifecycleError), a *StreamError (10334,
// 260, 280, 47), ErrHistoryLost (286), a *TopologyError or *ImagesError
// refusal at start, a malformed change event). Every other error is logged
// and retried from the last checkpoint with capped exponential backoff
// (past FailingAfter the tailer reports itself failing); meanwhile the
// checkpoint is rewritten every checkpoint interval, so a standby does not
// mistake a retrying tailer for a dead one.
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
	retry := backoff.New(retryBackoff)
	for {
		if held != nil {
			if t.standBy(ctx, held) != nil {
				return nil
			}
			held = nil
			retry.Reset()
		}
		progressed, err := t.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if h, fenced := t.fenced(err); fenced {
			held = h
			retry.Reset()
			continue
		}
		if Classify(err) == fault.Fatal {
			return err
		}
		if errors.Is(err, errRestart) {
			retry.Reset()
			continue
		}
		full := t.streamFull(err)
		if progressed {
			retry.Reset()
		}
		wait := retry.Next()
		t.metrics.Retry()
		if !full {
			_, _, why := classifyServer(err)
			if !t.failed(err, why) {
				t.log.Warn("tailer error, resuming from the last checkpoint", zap.Error(err), zap.String("cause", why.String()),
					zap.Duration("retry_in", wait), zap.Int("attempt", retry.Attempt()))
			}
		}
		if err := t.pause(ctx, wait); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			held, _ = t.fenced(err)
		}
	}
}

// retryBackoff paces Run's retries from the checkpoint: 200 ms doubling
// to 10 s, with equal jitter; a session that progressed starts it again.
var retryBackoff = backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.5}

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
	// startAfter marks an invalidate's token: a stream resumes after it
	// only with startAfter.
	startAfter bool
	// size approximates the published message's bytes (MaxInFlightBytes).
	size int64
}

// state is one change-stream session's bookkeeping.
type state struct {
	queue []pending
	// queueBytes is the sum of the queue's sizes.
	queueBytes int64
	durable    *point // newest position whose items are all acked
	lastSave   time.Time
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
	// fragments are the fragments read so far of a split event; while
	// there are any, no token may become a checkpoint.
	fragments []bson.Raw
	// rounds counts answered TryNext calls: a session that read from its
	// stream and then saved is healthy.
	rounds int
	// pub builds and sends this session's messages (bus.Publisher: the
	// one publisher of tailer, snapshot and replay), routing each event
	// to its sink lane (a transaction whole to its first event's lane).
	// One per session: a session starts at a transaction boundary (no
	// checkpoint inside one), so its router sees every transaction's
	// first event.
	pub *bus.Publisher
	// layoutChecked is when the lane layout stamped on the streams was
	// last compared with this tailer's (bus.CheckLaneLayout).
	layoutChecked time.Time
}

// DefaultLayoutCheck is how often a running tailer with lanes compares the
// lane layout stamped on the streams with its own (Config.LayoutCheck): a
// sink started with another sink.lanes while the streams were drained
// restamps them, and this tailer must stop rather than route events to
// lanes nobody reads.
const DefaultLayoutCheck = 10 * time.Second

func (t *Tailer) runOnce(ctx context.Context) (progressed bool, err error) {
	if t.src == nil {
		src, err := t.preflight(ctx)
		if err != nil {
			return false, err
		}
		t.src = &src
		t.log.Info("source checked", zap.String("version", src.version), zap.Bool("split_large_events", src.split),
			zap.String("full_document", string(t.cfg.FullDocument)), zap.Bool("pre_images", t.cfg.PreImages))
	}
	cp, err := t.acquire(ctx)
	if err != nil {
		return false, err
	}
	opts := options.ChangeStream().
		SetFullDocument(t.cfg.FullDocument.option()).
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
			return false, fault.Fatal.Errorf("stored checkpoint is unreadable: %w", err)
		}
		if cp.StartAfter {
			// An invalidate's token: resumeAfter it fails with 260.
			opts.SetStartAfter(tok)
			startDesc = "after the invalidate at checkpoint " + string(cp.Token)
		} else {
			opts.SetResumeAfter(tok)
			startDesc = "checkpoint " + string(cp.Token)
		}
	case !t.cfg.Start.Now:
		ts := event.ClusterTime{T: t.cfg.Start.T, I: t.cfg.Start.I}.Timestamp()
		opts.SetStartAtOperationTime(&ts)
		startDesc = fmt.Sprintf("cluster time %d.%d", t.cfg.Start.T, t.cfg.Start.I)
	default:
		startDesc = "now"
	}
	pipeline := mongo.Pipeline{matchStage(t.cfg.Collections)}
	if t.src.split {
		// Must be the last stage.
		pipeline = append(pipeline, bson.D{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}})
	}
	db := t.client.Database(t.cfg.Database)
	cs, err := db.Watch(ctx, pipeline, opts)
	if err != nil {
		return false, t.classify(ctx, err, cp, nil)
	}
	defer cs.Close(context.WithoutCancel(ctx))
	t.log.Info("change stream open", zap.String("database", t.cfg.Database), zap.Strings("collections", t.cfg.Collections), zap.String("start", startDesc))

	st := &state{lastSave: t.clock.Now()}
	if cp != nil {
		st.events = cp.Events
		if tok, err := cp.ResumeToken(); err == nil {
			st.durable = &point{tok: tok, ct: cp.ClusterTime, events: cp.Events, startAfter: cp.StartAfter}
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
		// A fatal stop releases it too: this process is exiting, and the
		// next tailer (a restart after the recovery) must not stand by.
		release := ctx.Err() != nil || Classify(err) == fault.Fatal
		if ferr := t.finish(context.WithoutCancel(ctx), st, release); ferr != nil && err == nil && ctx.Err() == nil {
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
			st.rounds++
			if err := t.handleChange(ctx, st, cs); err != nil {
				return progressed, err
			}
		} else {
			if err := cs.Err(); err != nil {
				if ctx.Err() != nil {
					return progressed, nil
				}
				return progressed, t.classify(ctx, err, st.durable.checkpoint(), cs.ResumeToken())
			}
			if cs.ID() == 0 {
				// The server closed the cursor (mongo/change_stream.go,
				// loopNext: TryNext is false with no error from now on).
				// An invalidate is let through and handled before this, so
				// this is never an idle stream: stop, deterministically.
				return progressed, fault.Fatal.Errorf("change stream on %q was closed by the server (cursor id 0) without an invalidate event; "+
					"the checkpoint stays at %s. Check the MongoDB log; a restart resumes from the checkpoint", t.cfg.Database, string(tokenJSON(st.durable.checkpoint())))
			}
			st.rounds++
			// Idle: the transaction held back (if any) is complete, and
			// the post-batch token covers everything scanned, unless it
			// is inside a split event whose fragments are still coming.
			if len(st.fragments) == 0 {
				if err := t.releaseHeld(ctx, st); err != nil {
					return progressed, err
				}
				if tok := cs.ResumeToken(); tok != nil {
					st.queue = append(st.queue, pending{token: cloneRaw(tok)})
				}
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
		if t.cfg.Streams.Laned() && t.clock.Now().Sub(st.layoutChecked) >= cmp.Or(t.cfg.LayoutCheck, DefaultLayoutCheck) {
			st.layoutChecked = t.clock.Now()
			if err := bus.CheckLaneLayout(ctx, t.js, t.cfg.Streams); err != nil {
				return progressed, err // fatal when the layouts differ (Classify), else retried
			}
		}
	}
}

// handleChange handles cs.Current: a fragment of a split event (held until
// the last one), a lifecycle event, or a document change.
func (t *Tailer) handleChange(ctx context.Context, st *state, cs *mongo.ChangeStream) error {
	raw := cs.Current
	_, of, split, err := splitInfo(raw)
	if err != nil {
		return fault.Fatal.Errorf("tailer: %w", err)
	}
	if split {
		st.fragments = append(st.fragments, cloneRaw(raw))
		if len(st.fragments) < int(of) {
			return nil
		}
		whole, err := reassemble(st.fragments)
		st.fragments = nil
		if err != nil {
			return fault.Fatal.Errorf("tailer: %w", err)
		}
		raw = whole
	} else if len(st.fragments) > 0 {
		return fault.Fatal.Errorf("tailer: %w: %d of %d fragments, then an unsplit event", ErrSplitEvent, len(st.fragments), of)
	}
	if lc, ok := lifecycleOf(raw, t.cfg.Collections); ok {
		return t.lifecycle(ctx, st, cs, lc)
	}
	ev, txn, err := event.FromChange(raw)
	if errors.Is(err, event.ErrNotDataChange) {
		// Not let through by the pipeline (a drop or rename of another
		// collection cannot match it): log, and make it a resume point.
		op, _ := raw.Lookup("operationType").StringValueOK()
		coll, _ := raw.Lookup("ns", "coll").StringValueOK()
		t.log.Warn("change stream reported a change the tailer does not replicate", zap.String("operation", op),
			zap.String("database", t.cfg.Database), zap.String("collection", coll))
		if err := t.releaseHeld(ctx, st); err != nil {
			return err
		}
		if tok, ok := raw.Lookup("_id").DocumentOK(); ok {
			st.queue = append(st.queue, pending{token: cloneRaw(tok)})
		}
		return nil
	}
	if err != nil {
		return fault.Fatal.Errorf("tailer: %w", err)
	}
	t.metrics.EventRead(ev.Source.Coll, ev.Op)
	return t.publishAll(ctx, st, st.txns.Add(ev, txn, cloneRaw(raw.Lookup("_id").Document())))
}

// releaseHeld publishes the held transaction event as its transaction's
// last.
func (t *Tailer) releaseHeld(ctx context.Context, st *state) error {
	return t.publishAll(ctx, st, st.txns.Flush())
}

func (t *Tailer) publishAll(ctx context.Context, st *state, evs []event.Sequenced) error {
	for _, s := range evs {
		if err := t.publish(ctx, st, s.Event, s.Token); err != nil {
			return err
		}
	}
	return nil
}

// publish sends one event, once the lease check passed (lease.go),
// stamped with this tailer's identity (HeaderTailer).
func (t *Tailer) publish(ctx context.Context, st *state, ev *event.Event, tok bson.Raw) error {
	if err := t.mayPublish(ctx, st); err != nil {
		return err
	}
	if st.pub == nil {
		// The message's form (subject, lane, Nats-Msg-Id, Content-Type,
		// large-event pointer) is the bus publisher's; the tailer adds
		// its identity (HeaderTailer) and keeps its own in-flight window:
		// drain waits on the futures, which are its checkpoint queue.
		st.pub = bus.NewPublisher(t.js, t.cfg.Streams, bus.WithHeader(HeaderTailer, t.cfg.Owner))
	}
	out, err := st.pub.Prepare(ev)
	if err != nil {
		return fault.Fatal.Wrap(err) // a collection in no lane, an envelope that does not encode
	}
	if out.Oversize {
		// Larger than max_payload: the envelope goes to the large-event
		// object store first (stored when StoreLarge returns), then its
		// pointer is published like any event. A store failure is
		// retryable: return it, the tailer resumes from its checkpoint
		// and republishes (the object is reused, the pointer deduped).
		// The put is bounded by its own timeout, not cut short by ctx.
		size := len(out.Msg.Data)
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bus.LargePutTimeout)
		err = st.pub.StoreLarge(pctx, &out)
		cancel()
		if err != nil {
			return fmt.Errorf("publish %s: %w", ev.ID, err)
		}
		t.log.Info("change larger than the bus's max_payload: stored in the large-event object store, its pointer published",
			zap.String("event_id", ev.ID), zap.String("collection", ev.Source.Coll), zap.Int("bytes", size),
			zap.Int64("max_payload", t.js.Conn().MaxPayload()), zap.String("object", out.Msg.Header.Get(bus.HeaderLargeObject)))
		// Storing a large object can take seconds: check the lease again
		// before its pointer goes out.
		if err := t.checkLease(ctx, st); err != nil {
			return err
		}
	}
	ack, err := st.pub.PublishAsync(out)
	if err != nil {
		return fmt.Errorf("publish %s: %w", ev.ID, err)
	}
	msg := out.Msg
	size := int64(len(msg.Data) + len(msg.Subject) + 256) // the headers are small and bounded
	st.queue = append(st.queue, pending{ack: ack, token: tok, ct: ev.Source.ClusterTime, coll: ev.Source.Coll, isEvt: true, size: size})
	st.queueBytes += size
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
			mustWait := all || len(st.queue) > t.cfg.MaxInFlight ||
				(t.cfg.MaxInFlightBytes > 0 && st.queueBytes > t.cfg.MaxInFlightBytes)
			if mustWait {
				select {
				case <-head.ack.Ok():
				case err := <-head.ack.Err():
					st.refused = t.refused(ctx, st, head.ack, err)
					return st.refused
				case <-ctx.Done():
					return ctx.Err()
				}
			} else {
				select {
				case <-head.ack.Ok():
				case err := <-head.ack.Err():
					st.refused = t.refused(ctx, st, head.ack, err)
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
		st.queueBytes -= head.size
		if head.token != nil {
			ct := head.ct
			if !head.isEvt && st.durable != nil {
				ct = st.durable.ct
			}
			// Only the raw token here: rendering it is left to save().
			st.durable = &point{tok: head.token, ct: ct, events: st.events, startAfter: head.startAfter}
		}
	}
	return nil
}

// point is a resume position whose events are all acknowledged.
type point struct {
	tok    bson.Raw
	ct     event.ClusterTime
	events uint64
	// startAfter: tok is an invalidate's token.
	startAfter bool
}

// checkpoint renders p for storage; nil for a nil point.
func (p *point) checkpoint() *checkpoint.Checkpoint {
	if p == nil {
		return nil
	}
	js, err := bson.MarshalExtJSON(p.tok, true, false)
	if err != nil {
		js = []byte("null")
	}
	return &checkpoint.Checkpoint{V: checkpoint.Version, Token: json.RawMessage(js), ClusterTime: p.ct, Events: p.events, StartAfter: p.startAfter}
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
		if errors.Is(err, checkpoint.ErrMoved) {
			st.lost = true
		}
		return err
	}
	if !bytes.Equal(st.start, st.durable.tok) {
		st.advanced = true
	}
	if st.rounds > 0 {
		t.healthy()
	}
	// The effective time, not the last event's: the token's own time
	// moves on an idle stream too (post-batch tokens).
	t.metrics.CheckpointSaved(cp.EffectiveTime())
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

// classify turns a change-stream error into the tailer's classes, by
// server error code and label (errors.go): the fatal codes become their
// typed errors; everything else is returned wrapped, for Run to retry.
//
// read is the resume token of the last change the stream returned (nil:
// none yet): a too-large event is the first replicated oplog entry after
// it (or after cp, or after the configured start time), which names the
// document in the message.
func (t *Tailer) classify(ctx context.Context, err error, cp *checkpoint.Checkpoint, read bson.Raw) error {
	where := "the configured start point"
	if cp != nil {
		where = fmt.Sprintf("checkpoint at cluster time %s (%s)", cp.ClusterTime, string(cp.Token))
	}
	class, code, _ := classifyServer(err)
	if class != fault.Fatal {
		return fmt.Errorf("change stream on %s: %w", t.cfg.Database, err)
	}
	if code == CodeChangeStreamHistoryLost {
		return &HistoryLostError{Database: t.cfg.Database, Collections: t.cfg.Collections, Checkpoint: where, Cause: err}
	}
	se := &StreamError{Code: code, Database: t.cfg.Database, Checkpoint: where, Split: t.src != nil && t.src.split, Cause: err}
	if code == CodeBSONObjectTooLarge {
		after, ok := oplog.TokenTime(read)
		if !ok && cp != nil {
			if tok, terr := cp.ResumeToken(); terr == nil {
				after, ok = oplog.TokenTime(tok)
			}
		}
		if !ok && !t.cfg.Start.Now {
			// startAtOperationTime includes its own time: look from
			// just before it.
			after, ok = event.ClusterTime{T: t.cfg.Start.T, I: t.cfg.Start.I}, true
			if after.I > 0 {
				after.I--
			} else if after.T > 0 {
				after.T, after.I = after.T-1, ^uint32(0)
			}
		}
		if ok {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			se.DocumentKey = t.tooLargeKey(lctx, after)
			cancel()
		}
	}
	return se
}

func cloneRaw(r bson.Raw) bson.Raw {
	if r == nil {
		return nil
	}
	out := make(bson.Raw, len(r))
	copy(out, r)
	return out
}
