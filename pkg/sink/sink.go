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
	Retry(class Class)
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
func (noMetrics) Retry(Class)                             {}
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
	applier *Applier
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
	return &Sink{js: js, pool: pool, set: set, cfg: cfg, log: log, metrics: m, hooks: hooks, applier: a}
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
	for attempt := 0; ; attempt++ {
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
			attempt = -1
			if !sleep(ctx, s.cfg.StandbyPoll) {
				return nil
			}
			continue
		case errors.As(err, &fenced):
			s.log.Warn("fence lost: another instance took the consumer; this one stops applying and stands by",
				zap.String("consumer", s.cfg.Consumer), zap.String("holder", fenced.Owner), zap.Int64("epoch", fenced.Current),
				zap.String("self", s.cfg.Owner))
			attempt = -1
			continue
		case err == nil:
			attempt = -1
			continue
		case Classify(err) == Fatal || errors.Is(err, ErrHookAbort):
			return err
		}
		wait := backoff(attempt)
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

func backoff(attempt int) time.Duration {
	base := 100 * time.Millisecond << min(max(attempt, 0), 7)
	base = min(base, 10*time.Second)
	return base/2 + time.Duration(rand.Int64N(int64(base/2)+1))
}

// connectFence opens the fence's own session with the pool's settings.
func (s *Sink) connectFence(ctx context.Context) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
}

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
	s.applier.fence = fence
	defer func() { s.applier.fence = nil }()
	cons, err := s.reconcile(rctx, fence, pos)
	if err != nil {
		return err
	}
	err = s.consume(rctx, cons, pos)
	if cause := context.Cause(rctx); ctx.Err() == nil && errors.Is(cause, state.ErrLockLost) {
		return fmt.Errorf("consumer %s: %w", s.cfg.Consumer, cause)
	}
	return err
}

// reconcile checks that the stream is the one the position belongs to and
// still holds every message after it, then creates the consumer afresh
// right after the position: Postgres, not NATS, is the authority, whether
// it is behind the consumer (restored from a backup) or ahead of it.
func (s *Sink) reconcile(ctx context.Context, fence *state.Fence, pos state.Position) (jetstream.Consumer, error) {
	name := s.cfg.Streams.Stream
	stream, err := s.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", name, err)
	}
	created := streamCreated(info)
	st := info.State
	switch {
	case !pos.StreamCreated.IsZero() && !pos.StreamCreated.Equal(created):
		return nil, &StreamChangedError{Stream: name, Consumer: s.cfg.Consumer, Position: pos, Created: created, Why: "it was re-created"}
	case pos.Seq > st.LastSeq:
		return nil, &StreamChangedError{Stream: name, Consumer: s.cfg.Consumer, Position: pos, Created: created,
			Why: fmt.Sprintf("it ends at sequence %d, before the position", st.LastSeq)}
	case st.FirstSeq > pos.Seq+1:
		return nil, gapError(name, pos, st.FirstSeq)
	}
	if pos.StreamCreated.IsZero() {
		if err := fence.Reposition(ctx, s.pool, name, created, pos.Seq); err != nil {
			return nil, err
		}
	}
	if err := stream.DeleteConsumer(ctx, s.cfg.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("reset consumer %s: %w", s.cfg.Consumer, err)
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
	if pos.Seq > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = pos.Seq + 1
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", s.cfg.Consumer, err)
	}
	s.log.Info("consumer created at the position Postgres recorded", zap.String("consumer", s.cfg.Consumer),
		zap.Uint64("position", pos.Seq), zap.Uint64("stream_first", st.FirstSeq), zap.Uint64("stream_last", st.LastSeq))
	return cons, nil
}

// streamCreated is the stream's identity as the position records it
// (timestamptz keeps microseconds).
func streamCreated(info *jetstream.StreamInfo) time.Time {
	return info.Created.UTC().Truncate(time.Microsecond)
}

// chunk is what the reader hands the apply loop: decoded items in
// stream order, or the error that ended reading.
type chunk struct {
	items []*item
	err   error
}

// consume runs the reader and the apply loop until an error. It returns
// nil only when ctx ends. Reading and transforming (this process's CPU)
// run in a reader goroutine while the previous batch applies (Postgres).
func (s *Sink) consume(ctx context.Context, cons jetstream.Consumer, pos state.Position) error {
	asm := newAssembler()
	idx, err := state.DeferredTxnIndex(ctx, s.pool, s.cfg.Consumer)
	if err != nil {
		return err
	}
	for _, d := range idx {
		asm.addSpilled(d.TxnID, d.TxnIndex, d.Seq, d.TxnLast, d.FirstSeen)
	}
	stats, err := state.ReadDeferredStats(ctx, s.pool, s.cfg.Consumer)
	if err != nil {
		return err
	}
	s.waiting, s.waitingBytes = stats.Waiting, stats.Bytes
	s.metrics.SetDeferred(stats)
	s.committed.Store(pos.Seq)

	var pull jetstream.PullMessagesOpt = jetstream.PullMaxMessages(2 * s.cfg.BatchSize)
	if s.cfg.FetchBytes > 0 {
		// A pull request whose max_bytes is below the next message's
		// size is answered 409 "Message Size Exceeds MaxBytes" and
		// delivers nothing, so the budget is never below two messages of
		// the largest size the server accepts (larger events are in the
		// object store, their pointers small).
		limit := max(s.cfg.FetchBytes, 2*s.js.Conn().MaxPayload())
		pull = jetstream.PullMaxMessagesWithBytesLimit(2*s.cfg.BatchSize, int(limit))
	}
	it, err := cons.Messages(pull)
	if err != nil {
		return fmt.Errorf("pull %s: %w", s.cfg.Consumer, err)
	}
	rctx, stopReader := context.WithCancel(ctx)
	chunks := make(chan chunk, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.read(rctx, cons, it, pos.Seq, chunks)
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
		trim := time.NewTicker(s.cfg.TrimEvery)
		defer trim.Stop()
		s.reportDeadLetters(rctx)
		dls := time.NewTicker(30 * time.Second)
		defer dls.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
				s.reportLag(rctx, cons)
			case <-trim.C:
				s.trim(rctx)
			case <-dls.C:
				s.reportDeadLetters(rctx)
			}
		}
	}()
	defer func() { stopReader(); <-lagDone }()

	loop := &applyLoop{s: s, asm: asm, maxSeq: pos.Seq, floor: pos.Seq}
	var lastDue, lastExpiry time.Time
	moreDue := false // the last read of due waits was full: read on
	for {
		var c chunk
		if moreDue {
			select {
			case <-ctx.Done():
				return nil
			case c = <-chunks:
			default:
			}
		} else {
			select {
			case <-ctx.Done():
				return nil
			case c = <-chunks:
			}
		}
		if c.err != nil {
			return c.err
		}
		s.metrics.Alive()
		for _, it := range c.items {
			asm.add(it)
			loop.maxSeq = max(loop.maxSeq, it.seq)
		}
		b := Batch{units: asm.take(), WaitRoom: max(s.cfg.MaxWaiting-int(s.waiting), 0)}
		if err := loop.loadSpilled(ctx, b.units); err != nil {
			return err
		}
		now := time.Now()
		readOn := moreDue
		moreDue = false
		if s.waiting > 0 && (now.Sub(lastDue) >= time.Second || readOn) {
			lastDue = now
			due, n, err := loop.dueWaits(ctx, now)
			if err != nil {
				return err
			}
			moreDue = n >= s.cfg.BatchSize
			b.units = append(b.units, due...)
		}
		if now.Sub(lastExpiry) >= time.Second {
			lastExpiry = now
			exp, err := loop.expire(ctx, now)
			if err != nil {
				return err
			}
			b.units = append(b.units, exp...)
		}
		if asm.memItems > 0 && (asm.memItems >= s.cfg.BatchSize || now.Sub(asm.oldestMem()) >= s.cfg.TxnSpillAfter) {
			b.spill = asm.spill()
		}
		b.Floor = loop.maxSeq
		if m := asm.minOpenSeq(); m > 0 {
			b.Floor = m - 1
		}
		if len(b.units) == 0 && len(b.spill) == 0 && b.Floor <= loop.floor {
			continue
		}
		if err := s.applyWithRetry(ctx, b); err != nil {
			return err
		}
		loop.floor = max(loop.floor, b.Floor)
		s.committed.Store(loop.floor)
	}
}

// applyLoop is the apply side's bookkeeping of one consume.
type applyLoop struct {
	s   *Sink
	asm *assembler
	// maxSeq is the highest sequence delivered; floor the recorded one.
	maxSeq, floor uint64
}

// loadSpilled fills the completed transactions whose parts were set aside
// with those parts, in transaction order.
func (l *applyLoop) loadSpilled(ctx context.Context, units []*unit) error {
	for _, u := range units {
		if !u.spilled {
			continue
		}
		parts, err := state.DeferredTxnParts(ctx, l.s.pool, l.s.cfg.Consumer, u.txnID)
		if err != nil {
			return err
		}
		items := make([]*item, 0, len(parts)+len(u.items))
		for _, d := range parts {
			it := decode(l.s.set, d.Seq, d.Event)
			it.deferred, it.attempts = true, d.Attempts
			items = append(items, it)
		}
		items = append(items, u.items...)
		u.items = orderTxn(items)
	}
	return nil
}

// orderTxn puts a transaction's items in index order, duplicates last.
func orderTxn(items []*item) []*item {
	byIx := map[int]*item{}
	var extra []*item
	for _, it := range items {
		ix := it.ev.Source.Txn.Index
		if prev, ok := byIx[ix]; ok || it.noop {
			if ok && !it.noop && prev.noop {
				byIx[ix] = it
				it = prev
			}
			it.noop = true
			extra = append(extra, it)
			continue
		}
		byIx[ix] = it
	}
	out := make([]*item, 0, len(items))
	for i := 0; i < len(byIx); i++ {
		if it, ok := byIx[i]; ok {
			out = append(out, it)
		}
	}
	return append(out, extra...)
}

// dueWaits reads the waiting events whose next try has come, grouped
// into their units.
func (l *applyLoop) dueWaits(ctx context.Context, now time.Time) ([]*unit, int, error) {
	ds, err := state.DueWaits(ctx, l.s.pool, l.s.cfg.Consumer, now, l.s.cfg.BatchSize)
	if err != nil {
		return nil, 0, err
	}
	byTxn := map[string]*unit{}
	var out []*unit
	for _, d := range ds {
		it := decode(l.s.set, d.Seq, d.Event)
		it.deferred, it.attempts = true, d.Attempts
		var u *unit
		if d.TxnID != "" {
			u = byTxn[d.TxnID]
		}
		if u == nil {
			u = &unit{txnID: d.TxnID, firstSeen: d.FirstSeen}
			out = append(out, u)
			if d.TxnID != "" {
				byTxn[d.TxnID] = u
			}
		}
		if d.FirstSeen.Before(u.firstSeen) {
			u.firstSeen = d.FirstSeen
		}
		u.items = append(u.items, it)
	}
	return out, len(ds), nil
}

// expire dead-letters whole the transactions that stayed incomplete past
// the timeout.
func (l *applyLoop) expire(ctx context.Context, now time.Time) ([]*unit, error) {
	var out []*unit
	for id, ot := range l.asm.expired(now.Add(-l.s.cfg.TxnTimeout)) {
		u := &unit{txnID: id, firstSeen: ot.firstSeen}
		var have []int
		if len(ot.spilled) > 0 {
			u.spilled = true
			parts, err := state.DeferredTxnParts(ctx, l.s.pool, l.s.cfg.Consumer, id)
			if err != nil {
				return nil, err
			}
			for _, d := range parts {
				it := decode(l.s.set, d.Seq, d.Event)
				it.deferred = true
				u.items = append(u.items, it)
			}
		}
		for _, it := range ot.items {
			u.items = append(u.items, it)
		}
		u.items = append(u.items, ot.extra...)
		u.items = orderTxn(u.items)
		for _, it := range u.items {
			if !it.noop {
				have = append(have, it.ev.Source.Txn.Index)
			}
		}
		if len(u.items) == 0 {
			continue
		}
		u.items[0].reject = newIncomplete(id, have, ot.lastIx, l.s.cfg.TxnTimeout.String())
		l.s.log.Error("Mongo transaction incomplete past the timeout: dead-lettered whole", zap.String("txn", id),
			zap.Ints("indexes", have), zap.Int("last_index", ot.lastIx), zap.Duration("timeout", l.s.cfg.TxnTimeout))
		out = append(out, u)
	}
	return out, nil
}

// read collects chunks until ctx ends or reading fails (sent as the last
// chunk's err). Delivered sequences must follow floor without a gap: a
// gap means the stream removed messages the sink never saw, and stops it.
// A sequence already delivered (a redelivery) is acknowledged when the
// position covers it and otherwise ignored: its first delivery is still
// in the apply loop and is acknowledged with it. An empty chunk is sent at
// least every second so deferred work gets its turn. Nothing delivered for
// readerStallAfter while the consumer has work, room and no pull request
// waiting ends the read with ErrReaderStalled (a pull lost with a NATS
// node): the sink re-reads from its position.
func (s *Sink) read(ctx context.Context, cons jetstream.Consumer, it jetstream.MessagesContext, floor uint64, out chan<- chunk) {
	next := floor + 1
	quiet := time.Now() // since when nothing was delivered
	for {
		var c chunk
		c.items, next, c.err = s.collect(ctx, it, next)
		if ctx.Err() != nil {
			return
		}
		if len(c.items) > 0 {
			quiet = time.Now()
		} else if c.err == nil && time.Since(quiet) >= readerStallAfter {
			quiet = time.Now()
			c.err = s.checkStalled(ctx, cons)
		}
		select {
		case out <- c:
		case <-ctx.Done():
			return
		}
		if c.err != nil {
			return
		}
	}
}

// collect reads up to BatchSize messages, or what came within BatchWait
// of the first one, or nothing within a second.
func (s *Sink) collect(ctx context.Context, it jetstream.MessagesContext, next uint64) ([]*item, uint64, error) {
	var items []*item
	deadline := time.Now().Add(time.Second)
	for len(items) < s.cfg.BatchSize {
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		nctx, cancel := context.WithTimeout(ctx, wait)
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				break
			}
			return items, next, fmt.Errorf("next message: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return items, next, fmt.Errorf("message metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		switch {
		case seq < next:
			if seq <= s.committed.Load() {
				_ = msg.Ack() // resolved already: a lost ack's redelivery
			}
			continue
		case seq > next:
			return items, next, s.deliveryGap(ctx, next, seq) // deliverygap.go: a stream gap, or messages lost in flight
		}
		item, err := decodeMsg(ctx, s.js, s.set, seq, msg.Headers(), msg.Data())
		if err != nil {
			// The large-event store is unreachable: read again from the
			// position once it answers (nothing of this chunk applies).
			return items, next, err
		}
		next++
		item.msg = msg
		items = append(items, item)
		if len(items) == 1 {
			if d := time.Now().Add(s.cfg.BatchWait); d.Before(deadline) {
				deadline = d
			}
		}
	}
	return items, next, nil
}

// applyWithRetry applies b, retrying retryable errors until ctx ends,
// then acknowledges its messages. While batches fail, the sink reports it
// (SetFailing), and past FailingAfter it says so at error level.
func (s *Sink) applyWithRetry(ctx context.Context, b Batch) error {
	size := 0
	for _, u := range b.units {
		size += len(u.items)
	}
	for attempt := 0; ; attempt++ {
		start := time.Now()
		res, err := s.applier.Apply(ctx, b)
		if err == nil {
			s.recovered()
			s.committed.Store(max(s.committed.Load(), b.Floor))
			s.afterCommit(ctx, res, size, time.Since(start), b)
			if s.hooks != nil && s.hooks.AfterCommit != nil {
				if herr := s.hooks.AfterCommit(ctx); herr != nil {
					return fmt.Errorf("%w: %v", ErrHookAbort, herr)
				}
			}
			ackAll(b)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, state.ErrFenced) {
			return err
		}
		class := Classify(err)
		if class == Fatal {
			return &FatalError{Err: fmt.Errorf("sink: %w", err)}
		}
		s.metrics.Retry(class)
		s.failing(err, class)
		wait := backoff(attempt)
		s.log.Warn("apply failed, retrying the batch", zap.Error(err), zap.String("class", class.String()),
			zap.Int("events", size), zap.Duration("retry_in", wait))
		if !sleep(ctx, wait) {
			return nil
		}
		// Keep the messages from being redelivered while Postgres is away.
		if attempt%5 == 4 {
			forEachMsg(b, func(m jetstream.Msg) { _ = m.InProgress() })
		}
	}
}

func (s *Sink) failing(err error, class Class) {
	now := time.Now()
	if s.failingSince.IsZero() {
		s.failingSince = now
	}
	over := now.Sub(s.failingSince) >= s.cfg.FailingAfter
	if over {
		s.log.Error("sink batches have been failing past sink.failing_after: nothing is lost, nothing applies",
			zap.Duration("for", now.Sub(s.failingSince).Round(time.Second)), zap.String("class", class.String()), zap.Error(err))
	}
	s.metrics.SetFailing(s.failingSince, over, err.Error())
}

func (s *Sink) recovered() {
	if !s.failingSince.IsZero() {
		s.log.Info("sink batches apply again", zap.Duration("failed_for", time.Since(s.failingSince).Round(time.Second)))
		s.failingSince = time.Time{}
		s.metrics.SetFailing(time.Time{}, false, "")
	}
}

func (s *Sink) afterCommit(ctx context.Context, res Result, size int, took time.Duration, b Batch) {
	s.metrics.BatchApplied(res, size, took)
	s.noteApplied(res.LastClusterTime)
	s.waiting += int64(res.NewWaiting - res.WaitResolved)
	s.waitingBytes += res.NewWaitingBytes - res.WaitResolvedBytes
	if res.NewWaiting+res.WaitResolved+res.Spilled+res.TxnResolved > 0 {
		if st, err := state.ReadDeferredStats(ctx, s.pool, s.cfg.Consumer); err == nil {
			s.waiting, s.waitingBytes = st.Waiting, st.Bytes
			s.metrics.SetDeferred(st)
		}
	}
	if res.RefillError != "" {
		s.log.Warn("child rows waiting for a parent could not be re-applied; their references stay NULL in cdc.dangling_refs",
			zap.String("error", res.RefillError))
	}
	if res.DeadLettered > 0 {
		s.log.Warn("events dead-lettered", zap.Int("count", res.DeadLettered), zap.Uint64("floor", b.Floor))
		s.publishDeadLetters(ctx, res.DeadLetters())
	}
}

// ackAll acknowledges every message of b: each is applied, skipped,
// dead-lettered or set aside by the commit that just happened. Acks are
// best effort: a lost ack redelivers, and the reader acknowledges the
// copy.
func ackAll(b Batch) { forEachMsg(b, func(m jetstream.Msg) { _ = m.Ack() }) }

func forEachMsg(b Batch, f func(jetstream.Msg)) {
	for _, u := range b.units {
		for _, it := range u.items {
			if it.msg != nil {
				f(it.msg)
			}
		}
	}
	for _, it := range b.spill {
		if it.msg != nil {
			f(it.msg)
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
		msg.Header.Set("Cdc-Error-Class", string(dl.Class))
		msg.Header.Set("Cdc-Doc-Key", dl.DocKey)
		msg.Header.Set("Cdc-Stream-Seq", strconv.FormatUint(dl.StreamSeq, 10))
		msg.Header.Set("Cdc-Stream", s.cfg.Streams.Stream) // the lane's stream with lanes: its sequences are its own
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

// trim frees space in a size-limited change stream: with the discard
// policy new a full stream refuses the tailer's publishes, and applied
// messages are not removed by anything else (limits retention). It purges
// only what is resolved in Postgres (the committed position, a true
// low-water mark) and what every other consumer of the stream has
// acknowledged. A failure is logged and left to the next round: the stream
// stays full meanwhile, which the tailer reports loudly (CDCStreamFull).
func (s *Sink) trim(ctx context.Context) {
	if s.cfg.Streams.MaxBytes <= 0 {
		return
	}
	floor := s.committed.Load()
	other, by, ok, err := bus.ConsumersFloor(ctx, s.js, s.cfg.Streams.Stream, s.cfg.Consumer)
	if err != nil {
		s.log.Warn("trim: cannot read the stream's other consumers; not trimming this round", zap.Error(err))
		return
	}
	if ok && other < floor {
		floor = other
	}
	purged, err := bus.TrimApplied(ctx, s.js, s.cfg.Streams.Stream, floor, TrimHighWater)
	if err != nil {
		s.log.Warn("trim: could not free space in the change stream", zap.Error(err), zap.Uint64("floor", floor))
		return
	}
	if purged > 0 {
		f := []zap.Field{zap.String("stream", s.cfg.Streams.Stream), zap.Uint64("purged", purged), zap.Uint64("floor", floor),
			zap.Uint64("applied", s.committed.Load())}
		if ok && other < s.committed.Load() {
			f = append(f, zap.String("held_by_consumer", by))
		}
		s.log.Info("trimmed applied messages from the size-limited change stream", f...)
	}
}

// reportDeadLetters reads the open dead letters per collection for the
// metrics; a failure is left to the next round (Postgres being away is
// reported by the apply path and /readyz).
func (s *Sink) reportDeadLetters(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	counts, err := state.OpenDeadLetterCounts(qctx, s.pool)
	if err != nil {
		s.log.Debug("open dead letters for the metrics", zap.Error(err))
		return
	}
	open := map[string]int64{}
	for _, c := range s.set.Collections() {
		open[c] = 0 // every replicated collection has a series: the alert clears
	}
	for _, c := range counts {
		open[c.Collection] += c.Count
	}
	s.metrics.SetOpenDeadLetters(open)
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
