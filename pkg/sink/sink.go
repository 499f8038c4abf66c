package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
)

// Config configures a Sink.
type Config struct {
	// Consumer is the durable consumer name.
	Consumer string
	// BatchSize is the most events per Postgres transaction (a Mongo
	// transaction larger than that still commits whole).
	BatchSize int
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
}

// Metrics receives the sink's counters; all methods must be cheap.
type Metrics interface {
	BatchApplied(res Result, size int, took time.Duration)
	Retry(class Class)
	// SetLag reports events not yet acknowledged and the newest applied
	// cluster time, every few seconds.
	SetLag(pending uint64, lastApplied event.ClusterTime)
	// Alive reports that the apply loop went round.
	Alive()
}

type noMetrics struct{}

func (noMetrics) BatchApplied(Result, int, time.Duration) {}
func (noMetrics) Retry(Class)                             {}
func (noMetrics) SetLag(uint64, event.ClusterTime)        {}
func (noMetrics) Alive()                                  {}

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
	applier *Applier
	cfg     Config
	log     *zap.Logger
	metrics Metrics
	hooks   *Hooks
	// lastApplied is the newest cluster time applied (packed; read by
	// the lag reporter).
	lastApplied atomic.Int64
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
	a := NewApplier(pool, set, cfg.Consumer, cfg.Streams.Stream)
	a.SetUnparked(cfg.Unparked)
	return &Sink{js: js, pool: pool, set: set, cfg: cfg, log: log, metrics: m, hooks: hooks, applier: a}
}

// ErrHookAbort is returned by Run when a test hook aborted it.
var ErrHookAbort = errors.New("sink aborted by hook")

// Run applies events until ctx is cancelled (returns nil) or a fatal error
// occurs. Retryable errors (NATS or Postgres unreachable) are retried with
// capped exponential backoff; nothing is acknowledged before it commits.
func (s *Sink) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := s.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			attempt = 0
			continue
		}
		if Classify(err) == Fatal || errors.Is(err, ErrHookAbort) {
			return err
		}
		wait := backoff(attempt)
		s.log.Warn("sink error, retrying", zap.Error(err), zap.Duration("retry_in", wait))
		s.metrics.Retry(Classify(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func backoff(attempt int) time.Duration {
	base := 100 * time.Millisecond << min(attempt, 7)
	base = min(base, 10*time.Second)
	return base/2 + time.Duration(rand.Int64N(int64(base/2)+1))
}

// storedFloor reads the position recorded with the last commit.
func (s *Sink) storedFloor(ctx context.Context) (uint64, bool, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT stream_seq FROM cdc.sink_positions WHERE consumer = $1`, s.cfg.Consumer).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read sink position: %w", err)
	}
	return uint64(seq), true, nil
}

// ensureConsumer declares the durable consumer. A consumer created anew
// (first start, or after someone deleted it) starts right after the
// position Postgres recorded, so Postgres, not NATS, is the authority.
func (s *Sink) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	stream, err := s.js.Stream(ctx, s.cfg.Streams.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", s.cfg.Streams.Stream, err)
	}
	floor, hasFloor, err := s.storedFloor(ctx)
	if err != nil {
		return nil, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", s.cfg.Streams.Stream, err)
	}
	if hasFloor && info.State.Msgs > 0 && info.State.FirstSeq > floor+1 {
		return nil, gapError(floor, info.State.FirstSeq)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       s.cfg.Consumer,
		Description:   "CDC Postgres sink",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: max(4*s.cfg.BatchSize, 20000),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if hasFloor && floor > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = floor + 1
	}
	cons, err := stream.Consumer(ctx, s.cfg.Consumer)
	switch {
	case err == nil:
		ci, err := cons.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("consumer %s info: %w", s.cfg.Consumer, err)
		}
		if ci.NumAckPending == 0 {
			return cons, nil
		}
		// Deliveries to a previous run that died before acknowledging
		// would come back only after AckWait. Postgres knows exactly what
		// committed: restart the consumer right after that.
		s.log.Info("consumer has deliveries of a previous run unacknowledged; restarting it at the position Postgres recorded",
			zap.String("consumer", s.cfg.Consumer), zap.Int("ack_pending", ci.NumAckPending), zap.Uint64("floor", floor))
		if err := stream.DeleteConsumer(ctx, s.cfg.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("reset consumer %s: %w", s.cfg.Consumer, err)
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("consumer %s: %w", s.cfg.Consumer, err)
	}
	cons, err = stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", s.cfg.Consumer, err)
	}
	s.log.Info("consumer created", zap.String("consumer", s.cfg.Consumer), zap.Uint64("start_seq", cfg.OptStartSeq))
	return cons, nil
}

// batch is what the reader hands the applier.
type batch struct {
	units []*unit
	// maxSeq is the highest sequence read so far; openSeq the lowest
	// sequence held in an incomplete transaction (0: none).
	maxSeq, openSeq uint64
	err             error
}

// runOnce consumes until an error. It returns nil only when ctx ends.
// Reading and transforming (this process's CPU) run in a reader goroutine
// while the previous batch applies (Postgres), one batch ahead.
func (s *Sink) runOnce(ctx context.Context) error {
	cons, err := s.ensureConsumer(ctx)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * s.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("pull %s: %w", s.cfg.Consumer, err)
	}
	rctx, stopReader := context.WithCancel(ctx)
	batches := make(chan batch, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.read(rctx, it, batches)
	}()
	defer func() {
		stopReader()
		it.Stop()
		<-readerDone
	}()

	// Lag is reported on its own clock, so it keeps moving while a batch
	// is stuck retrying (Postgres down): that is when it matters.
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
				s.reportLag(rctx, cons)
			}
		}
	}()
	defer func() { stopReader(); <-lagDone }()

	var waiting []*unit // parents not there yet (policy wait)
	for {
		var b batch
		select {
		case <-ctx.Done():
			return nil
		case b = <-batches:
		}
		if b.err != nil {
			return b.err
		}
		s.metrics.Alive()
		units := b.units
		now := time.Now()
		var later []*unit
		for _, u := range waiting {
			if now.Before(u.nextTry) {
				later = append(later, u)
			} else {
				units = append(units, u)
			}
		}
		waiting = later
		if len(units) == 0 {
			continue
		}
		floor := b.maxSeq
		if m := minSeq(b.openSeq, waiting); m > 0 {
			floor = m - 1
		}
		wait, err := s.applyWithRetry(ctx, units, Position{Floor: floor})
		if err != nil {
			return err
		}
		for _, u := range wait {
			u.nextTry = time.Now().Add(time.Second)
			for _, it := range u.items {
				if it.msg != nil {
					_ = it.msg.InProgress() // keep it from redelivery while it waits
				}
			}
		}
		waiting = append(waiting, wait...)
	}
}

// read collects batches until ctx ends or reading fails (sent as the last
// batch's err). An empty batch is sent at least every second so waiting
// units get their retries.
func (s *Sink) read(ctx context.Context, it jetstream.MessagesContext, out chan<- batch) {
	asm := newAssembler()
	var maxSeq uint64
	for {
		err := s.collect(ctx, it, asm, &maxSeq)
		if ctx.Err() != nil {
			return
		}
		b := batch{units: asm.take(), maxSeq: maxSeq, openSeq: asm.minOpenSeq(), err: err}
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// minSeq is the lowest stream sequence among m (0: none) and the items of
// units.
func minSeq(m uint64, units []*unit) uint64 {
	for _, u := range units {
		for _, it := range u.items {
			if m == 0 || it.seq < m {
				m = it.seq
			}
		}
	}
	return m
}

// collect reads messages until a batch is ready: BatchSize events in
// complete units, or BatchWait after the first ready unit. With nothing
// ready it waits up to a second and returns, so ctx is checked.
func (s *Sink) collect(ctx context.Context, it jetstream.MessagesContext, asm *assembler, maxSeq *uint64) error {
	deadline := time.Now().Add(time.Second)
	for asm.readyItems < s.cfg.BatchSize {
		if len(asm.ready) > 0 {
			if d := time.Now().Add(s.cfg.BatchWait); d.Before(deadline) {
				deadline = d
			}
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil
		}
		nctx, cancel := context.WithTimeout(ctx, wait)
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("next message: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("message metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		if seq > *maxSeq {
			*maxSeq = seq
		}
		item := decode(s.set, seq, msg.Data())
		item.msg = msg
		asm.add(item)
	}
	return nil
}

// applyWithRetry applies units, retrying retryable errors until ctx ends,
// then acknowledges their messages. It returns the units that wait for a
// parent (not acknowledged).
func (s *Sink) applyWithRetry(ctx context.Context, units []*unit, pos Position) ([]*unit, error) {
	size := 0
	for _, u := range units {
		size += len(u.items)
	}
	for attempt := 0; ; attempt++ {
		start := time.Now()
		res, err := s.applier.Apply(ctx, units, pos)
		if err == nil {
			s.metrics.BatchApplied(res, size, time.Since(start))
			s.noteApplied(res.LastClusterTime)
			if res.RefillError != "" {
				s.log.Warn("child rows waiting for a parent could not be re-applied; their references stay NULL in cdc.dangling_refs",
					zap.String("error", res.RefillError))
			}
			if res.DeadLettered > 0 {
				s.log.Warn("events dead-lettered", zap.Int("count", res.DeadLettered), zap.Uint64("floor", pos.Floor))
				s.publishDeadLetters(ctx, res.DeadLetters())
			}
			if s.hooks != nil && s.hooks.AfterCommit != nil {
				if herr := s.hooks.AfterCommit(ctx); herr != nil {
					return nil, fmt.Errorf("%w: %v", ErrHookAbort, herr)
				}
			}
			waits := map[*unit]bool{}
			for _, u := range res.waiting {
				waits[u] = true
			}
			for _, u := range units {
				if waits[u] {
					continue
				}
				for _, it := range u.items {
					if it.msg != nil {
						// Acks are best effort: a lost ack redelivers, and
						// the version guard skips the copy.
						_ = it.msg.Ack()
					}
				}
			}
			return res.waiting, nil
		}
		class := Classify(err)
		if class == Fatal {
			return nil, &FatalError{Err: fmt.Errorf("sink: %w", err)}
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		s.metrics.Retry(class)
		wait := backoff(attempt)
		s.log.Warn("apply failed, retrying the batch", zap.Error(err), zap.String("class", class.String()),
			zap.Int("events", size), zap.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(wait):
		}
		// Keep the messages from being redelivered while Postgres is away.
		if attempt%5 == 4 {
			for _, u := range units {
				for _, it := range u.items {
					if it.msg != nil {
						_ = it.msg.InProgress()
					}
				}
			}
		}
	}
}

// publishDeadLetters copies dead letters to the DLQ stream, for consumers
// that watch it. cdc.dead_letters (committed with the batch) is the record
// of truth; a copy that cannot be published is logged at error level and
// stays visible there.
func (s *Sink) publishDeadLetters(ctx context.Context, dls []DeadLetter) {
	for _, dl := range dls {
		msg := &nats.Msg{
			Subject: s.cfg.Streams.DLQSubject(dl.DB, dl.Coll),
			Data:    dl.Envelope,
			Header:  nats.Header{},
		}
		msg.Header.Set(jetstream.MsgIDHeader, "dlq:"+dl.EventID)
		msg.Header.Set("Content-Type", event.ContentType)
		msg.Header.Set("Cdc-Error-Class", dl.Class)
		msg.Header.Set("Cdc-Doc-Key", dl.DocKey)
		msg.Header.Set("Cdc-Stream-Seq", strconv.FormatUint(dl.StreamSeq, 10))
		reason := dl.Reason
		if len(reason) > 1024 {
			reason = reason[:1024]
		}
		msg.Header.Set("Cdc-Reason", reason)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.js.PublishMsg(pctx, msg, jetstream.WithExpectStream(s.cfg.Streams.DLQStream))
		cancel()
		if err != nil {
			s.log.Error("dead letter not copied to the DLQ stream (it is in cdc.dead_letters)",
				zap.String("event_id", dl.EventID), zap.String("stream", s.cfg.Streams.DLQStream), zap.Error(err))
		}
	}
}

// reportLag reads the consumer's pending count for the lag metrics; a
// failure is left to the next round (the apply path reports real errors).
func (s *Sink) reportLag(ctx context.Context, cons jetstream.Consumer) {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ci, err := cons.Info(ictx)
	if err != nil {
		s.log.Debug("consumer info for lag", zap.Error(err))
		return
	}
	s.metrics.SetLag(ci.NumPending+uint64(ci.NumAckPending), event.Unpack(s.lastApplied.Load()))
}
