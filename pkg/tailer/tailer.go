package tailer

import (
	"cmp"
	"context"
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

// DefaultLayoutCheck is how often a running tailer with lanes compares the
// lane layout stamped on the streams with its own (Config.LayoutCheck): a
// sink started with another sink.lanes while the streams were drained
// restamps them, and this tailer must stop rather than route events to
// lanes nobody reads.
const DefaultLayoutCheck = 10 * time.Second

// runOnce is one change-stream session: it checks the source once, acquires
// the checkpoint, opens the stream from it and tails until an error or ctx
// ends, flushing what is acknowledged on every exit path. progressed
// reports whether the session saved a later position than it started from.
func (t *Tailer) runOnce(ctx context.Context) (progressed bool, err error) {
	if err := t.checkSource(ctx); err != nil {
		return false, err
	}
	cp, err := t.acquire(ctx)
	if err != nil {
		return false, err
	}
	cs, err := t.openStream(ctx, cp)
	if err != nil {
		return false, err
	}
	defer cs.Close(context.WithoutCancel(ctx))
	st, err := t.newState(ctx, cp, cs)
	if err != nil {
		return false, err
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
	return false, t.tail(ctx, st, cs) // progressed is the deferred finish's
}

// checkSource runs the preflight once per Tailer: what it learns (server
// version, split support) holds for every later session.
func (t *Tailer) checkSource(ctx context.Context) error {
	if t.src != nil {
		return nil
	}
	src, err := t.preflight(ctx)
	if err != nil {
		return err
	}
	t.src = &src
	t.log.Info("source checked", zap.String("version", src.version), zap.Bool("split_large_events", src.split),
		zap.String("full_document", string(t.cfg.FullDocument)), zap.Bool("pre_images", t.cfg.PreImages))
	return nil
}

// openStream opens the change stream from cp (or, without one, from the
// configured start point); its errors are classified like the stream's
// own, so a checkpoint past the oplog is ErrHistoryLost at once.
func (t *Tailer) openStream(ctx context.Context, cp *checkpoint.Checkpoint) (*mongo.ChangeStream, error) {
	opts, startDesc, err := t.streamOptions(cp)
	if err != nil {
		return nil, err
	}
	pipeline := mongo.Pipeline{matchStage(t.cfg.Collections)}
	if t.src.split {
		// Must be the last stage.
		pipeline = append(pipeline, bson.D{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}})
	}
	db := t.client.Database(t.cfg.Database)
	cs, err := db.Watch(ctx, pipeline, opts)
	if err != nil {
		return nil, t.classify(ctx, err, cp, nil)
	}
	t.log.Info("change stream open", zap.String("database", t.cfg.Database), zap.Strings("collections", t.cfg.Collections), zap.String("start", startDesc))
	return cs, nil
}

// streamOptions builds the change stream's options and describes its start
// point for the log: an invalidate's token needs startAfter (resumeAfter
// it fails with 260), any other token resumeAfter.
func (t *Tailer) streamOptions(cp *checkpoint.Checkpoint) (*options.ChangeStreamOptionsBuilder, string, error) {
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
			return nil, "", fault.Fatal.Errorf("stored checkpoint is unreadable: %w", err)
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
	return opts, startDesc, nil
}

// newState starts a session's bookkeeping at cp, or, without one and with
// start "now", at the stream's first token, saved before anything is read.
func (t *Tailer) newState(ctx context.Context, cp *checkpoint.Checkpoint, cs *mongo.ChangeStream) (*state, error) {
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
				return nil, err
			}
		}
	}
	return st, nil
}

// tail is the session's read loop: it returns nil once ctx ends, else the
// first error, for runOnce to finish the session and Run to classify it.
func (t *Tailer) tail(ctx context.Context, st *state, cs *mongo.ChangeStream) error {
	for {
		if ctx.Err() != nil {
			return nil
		}
		t.metrics.Alive()
		if cs.TryNext(ctx) {
			st.rounds++
			if err := t.handleChange(ctx, st, cs); err != nil {
				return err
			}
		} else {
			if err := cs.Err(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return t.classify(ctx, err, st.durable.checkpoint(), cs.ResumeToken())
			}
			if cs.ID() == 0 {
				// The server closed the cursor (mongo/change_stream.go,
				// loopNext: TryNext is false with no error from now on).
				// An invalidate is let through and handled before this, so
				// this is never an idle stream: stop, deterministically.
				return fault.Fatal.Errorf("change stream on %q was closed by the server (cursor id 0) without an invalidate event; "+
					"the checkpoint stays at %s. Check the MongoDB log; a restart resumes from the checkpoint", t.cfg.Database, string(tokenJSON(st.durable.checkpoint())))
			}
			st.rounds++
			// Idle: the transaction held back (if any) is complete, and
			// the post-batch token covers everything scanned, unless it
			// is inside a split event whose fragments are still coming.
			if len(st.fragments) == 0 {
				if err := t.releaseHeld(ctx, st); err != nil {
					return err
				}
				if tok := cs.ResumeToken(); tok != nil {
					st.queue = append(st.queue, pending{token: cloneRaw(tok)})
				}
			}
		}
		if err := t.drain(ctx, st, false); err != nil {
			return err
		}
		if err := t.periodic(ctx, st); err != nil {
			return err
		}
	}
}

// periodic is the session's timed work after each round, due whether or
// not events came: the checkpoint heartbeat and, with lanes, the layout
// check.
func (t *Tailer) periodic(ctx context.Context, st *state) error {
	// Every interval, moved or not: the rewrite is the heartbeat that
	// keeps a standby from taking over.
	if t.clock.Now().Sub(st.lastSave) >= t.cfg.CheckpointInterval {
		if err := t.save(ctx, st, false); err != nil {
			return err
		}
	}
	if t.cfg.Streams.Laned() && t.clock.Now().Sub(st.layoutChecked) >= cmp.Or(t.cfg.LayoutCheck, DefaultLayoutCheck) {
		st.layoutChecked = t.clock.Now()
		if err := bus.CheckLaneLayout(ctx, t.js, t.cfg.Streams); err != nil {
			return err // fatal when the layouts differ (Classify), else retried
		}
	}
	return nil
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
