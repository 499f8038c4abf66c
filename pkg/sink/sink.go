package sink

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/backoff"
	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// Config configures a Sink.
type Config struct {
	// Consumer is the durable consumer name.
	Consumer string
	// BatchSize is the most events per Postgres transaction (a Mongo
	// transaction larger than that still commits whole).
	BatchSize int
	// FetchBytes bounds what the pull consumer buffers ahead of the apply
	// loop (besides 2×BatchSize messages); 0: no byte bound. From
	// memory_limit (config.Budget).
	FetchBytes int64
	// BatchWait is how long a partial batch waits for more events.
	BatchWait time.Duration
	// AckWait is the consumer's redelivery timeout.
	AckWait time.Duration
	// Streams names the stream.
	Streams bus.StreamsConfig
	// Unparked lists collections whose documents keep applying after one
	// of their events is dead-lettered; every other collection holds a
	// dead-lettered document's later events until an operator acts.
	Unparked []string
	// Owner identifies this instance in the fence (host:pid:nonce when
	// empty).
	Owner string
	// MaxWaiting bounds the events set aside waiting for a parent; a wait
	// past it is dead-lettered. 0: 100,000.
	MaxWaiting int
	// TxnSpillAfter is how long the parts of an open Mongo transaction stay
	// in memory (unacknowledged) before they are set aside in Postgres.
	// 0: 5 s.
	TxnSpillAfter time.Duration
	// TxnTimeout is how long a Mongo transaction may stay incomplete
	// before it is dead-lettered whole (class incomplete). 0: 10 min.
	TxnTimeout time.Duration
	// FailingAfter is how long batches may fail with retryable errors
	// before the sink reports itself failing (unready, error log, metric).
	// 0: 1 min.
	FailingAfter time.Duration
	// StandbyPoll is how often a standby tries to take the consumer.
	// 0: 2 s.
	StandbyPoll time.Duration
	// TrimEvery is how often the active sink frees space in a
	// size-limited change stream (bus.TrimApplied: once it is over
	// TrimHighWater of a limit, messages at or below the applied position,
	// and below every other consumer's ack floor, are purged). 0: 10 s.
	TrimEvery time.Duration
}

// TrimHighWater is the fill (of max_bytes or max_msgs) above which the sink
// purges applied messages from the change stream, down to about half.
const TrimHighWater = 0.8

func (c *Config) defaults() {
	if c.MaxWaiting == 0 {
		c.MaxWaiting = 100_000
	}
	if c.TxnSpillAfter == 0 {
		c.TxnSpillAfter = 5 * time.Second
	}
	if c.TxnTimeout == 0 {
		c.TxnTimeout = 10 * time.Minute
	}
	if c.FailingAfter == 0 {
		c.FailingAfter = time.Minute
	}
	if c.StandbyPoll == 0 {
		c.StandbyPoll = 2 * time.Second
	}
	if c.TrimEvery == 0 {
		c.TrimEvery = 10 * time.Second
	}
	if c.Owner == "" {
		c.Owner = DefaultOwner()
	}
}

// Metrics receives the sink's counters; all methods must be cheap.
type Metrics interface {
	BatchApplied(res Result, size int, took time.Duration)
	Retry(class fault.Class)
	// SetLag reports events not yet acknowledged and the newest applied
	// cluster time, every few seconds.
	SetLag(pending uint64, lastApplied event.ClusterTime)
	// Alive reports that the apply loop went round.
	Alive()
	// SetDeferred reports what is set aside in cdc.deferred_events.
	SetDeferred(st state.DeferredStats)
	// SetRole reports whether this instance applies ("active") or stands
	// by ("standby"), and who holds the consumer.
	SetRole(role, holder string)
	// SetFailing reports since when batches have been failing (zero: they
	// are not), and whether that has lasted past Config.FailingAfter.
	SetFailing(since time.Time, failing bool, cause string)
	// SetOpenDeadLetters reports the open dead letters per collection
	// (every replicated collection, 0 when it has none), every half
	// minute.
	SetOpenDeadLetters(open map[string]int64)
}

type noMetrics struct{}

func (noMetrics) BatchApplied(Result, int, time.Duration) {}
func (noMetrics) Retry(fault.Class)                       {}
func (noMetrics) SetLag(uint64, event.ClusterTime)        {}
func (noMetrics) Alive()                                  {}
func (noMetrics) SetDeferred(state.DeferredStats)         {}
func (noMetrics) SetRole(string, string)                  {}
func (noMetrics) SetFailing(time.Time, bool, string)      {}
func (noMetrics) SetOpenDeadLetters(map[string]int64)     {}

// Hooks lets tests inject faults at exact points. Production leaves it nil.
type Hooks struct {
	// AfterCommit runs after a batch committed and before its messages
	// are acknowledged; a non-nil error aborts Run as if the process died.
	AfterCommit func(ctx context.Context) error
}

// Sink consumes the change stream into Postgres. Create with New; Run
// blocks.
type Sink struct {
	js      jetstream.JetStream
	pool    *pgxpool.Pool
	set     *transform.Set
	applier batchApplier
	// retry paces the retries of Run and applyWithRetry (retryBackoff;
	// tests shorten it).
	retry   backoff.Policy
	cfg     Config
	log     *zap.Logger
	metrics Metrics
	hooks   *Hooks
	// lastApplied is the newest cluster time applied (packed; read by
	// the lag reporter).
	lastApplied atomic.Int64
	// committed is the position of the last commit (read by the reader to
	// acknowledge redeliveries of what is resolved).
	committed atomic.Uint64
	// waiting and waitingBytes count the deferred waiting events.
	waiting, waitingBytes int64
	failingSince          time.Time
}

func (s *Sink) noteApplied(ct event.ClusterTime) {
	for {
		cur := s.lastApplied.Load()
		if ct.Pack() <= cur || s.lastApplied.CompareAndSwap(cur, ct.Pack()) {
			return
		}
	}
}

// New returns a Sink. Call transform.CheckCatalog before Run.
func New(js jetstream.JetStream, pool *pgxpool.Pool, set *transform.Set, cfg Config, log *zap.Logger, m Metrics, hooks *Hooks) *Sink {
	if m == nil {
		m = noMetrics{}
	}
	cfg.defaults()
	a := NewApplier(pool, set, cfg.Consumer, cfg.Streams.Stream)
	a.SetUnparked(cfg.Unparked)
	return &Sink{js: js, pool: pool, set: set, cfg: cfg, log: log, metrics: m, hooks: hooks, applier: a, retry: retryBackoff}
}

// batchApplier is what the consumer loop needs of an Applier: one batch,
// one transaction, committed whole or not at all (a fake in the loop's
// unit tests).
type batchApplier interface {
	Apply(ctx context.Context, b Batch) (Result, error)
}

// ErrHookAbort is returned by Run when a test hook aborted it.
var ErrHookAbort = errors.New("sink aborted by hook")

// Run applies events until ctx is cancelled (returns nil) or a fatal error
// occurs. It first takes the consumer's fence; while another live instance
// holds it, this one stands by and says so. Retryable errors (NATS or
// Postgres unreachable) are retried with capped exponential backoff;
// nothing is acknowledged before it commits.
func (s *Sink) Run(ctx context.Context) error {
	var lastHolder string
	var lastSaid time.Time
	retry := backoff.New(s.retry)
	for {
		err := s.runHeld(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var held *state.HeldError
		var fenced *state.FencedError
		switch {
		case errors.As(err, &held):
			s.metrics.SetRole("standby", held.Owner)
			s.metrics.Alive() // a healthy standby is making the progress it can
			if held.Owner != lastHolder || time.Since(lastSaid) > time.Minute {
				s.log.Info("standing by: another instance holds the consumer", zap.String("consumer", s.cfg.Consumer),
					zap.String("holder", held.Owner), zap.Int64("epoch", held.Epoch), zap.Time("since", held.Since),
					zap.String("self", s.cfg.Owner))
				lastHolder, lastSaid = held.Owner, time.Now()
			}
			retry.Reset()
			if !sleep(ctx, s.cfg.StandbyPoll) {
				return nil
			}
			continue
		case errors.As(err, &fenced):
			s.log.Warn("fence lost: another instance took the consumer; this one stops applying and stands by",
				zap.String("consumer", s.cfg.Consumer), zap.String("holder", fenced.Owner), zap.Int64("epoch", fenced.Current),
				zap.String("self", s.cfg.Owner))
			retry.Reset()
			continue
		case err == nil:
			retry.Reset()
			continue
		case Classify(err) == fault.Fatal || errors.Is(err, ErrHookAbort):
			return err
		}
		wait := retry.Next()
		s.log.Warn("sink error, retrying", zap.Error(err), zap.Duration("retry_in", wait))
		s.metrics.Retry(Classify(err))
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retryBackoff paces Run's and applyWithRetry's retries: 100 ms doubling
// to 10 s, with equal jitter so that lanes and instances retrying one
// Postgres outage do not come back in step.
var retryBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.5}

// runHeld takes the fence, reconciles the consumer with the position
// Postgres holds and consumes until an error or the end of ctx.
func (s *Sink) runHeld(ctx context.Context) error {
	fence, pos, err := state.AcquireFence(ctx, s.connectFence, s.cfg.Consumer, s.cfg.Streams.Stream, s.cfg.Owner, 2*time.Second)
	if err != nil {
		return err
	}
	defer fence.Release(context.WithoutCancel(ctx))
	s.log.Info("took the consumer", zap.String("consumer", s.cfg.Consumer), zap.String("owner", s.cfg.Owner),
		zap.Int64("epoch", fence.Epoch()), zap.Uint64("position", pos.Seq))
	s.metrics.SetRole("active", s.cfg.Owner)
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-fence.Lost():
			cancel(state.ErrLockLost)
		case <-rctx.Done():
		}
	}()
	cons, err := s.reconcile(rctx, fence, pos)
	if err != nil {
		return err
	}
	err = s.consume(rctx, cons, fence, pos)
	if cause := context.Cause(rctx); ctx.Err() == nil && errors.Is(cause, state.ErrLockLost) {
		return fmt.Errorf("consumer %s: %w", s.cfg.Consumer, cause)
	}
	return err
}
