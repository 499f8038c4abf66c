package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/backoff"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/state"
)

// consume runs the reader and the apply loop until an error. It returns
// nil only when ctx ends. Reading and transforming (this process's CPU)
// run in a reader goroutine while the previous batch applies (Postgres);
// the reports run in another (report).
func (s *Sink) consume(ctx context.Context, cons jetstream.Consumer, fence *state.Fence, pos state.Position) error {
	asm, err := s.loadDeferred(ctx)
	if err != nil {
		return err
	}
	s.committed.Store(pos.Seq)
	it, err := cons.Messages(s.pullOpt())
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
	reportsDone := make(chan struct{})
	go func() {
		defer close(reportsDone)
		s.report(rctx, cons)
	}()
	defer func() { stopReader(); <-reportsDone }()

	loop := &applyLoop{s: s, asm: asm, fence: fence, maxSeq: pos.Seq, floor: pos.Seq}
	return loop.run(ctx, chunks)
}

// loadDeferred returns an assembler that knows the transaction parts set
// aside in cdc.deferred_events, and reads what waits there.
func (s *Sink) loadDeferred(ctx context.Context) (*assembler, error) {
	asm := newAssembler()
	idx, err := state.DeferredTxnIndex(ctx, s.pool, s.cfg.Consumer)
	if err != nil {
		return nil, err
	}
	for _, d := range idx {
		asm.addSpilled(d.TxnID, d.TxnIndex, d.Seq, d.TxnLast, d.FirstSeen)
	}
	stats, err := state.ReadDeferredStats(ctx, s.pool, s.cfg.Consumer)
	if err != nil {
		return nil, err
	}
	s.waiting, s.waitingBytes = stats.Waiting, stats.Bytes
	s.metrics.SetDeferred(stats)
	return asm, nil
}

// pullOpt bounds what the pull consumer buffers ahead of the apply loop:
// 2×BatchSize messages, and Config.FetchBytes.
func (s *Sink) pullOpt() jetstream.PullMessagesOpt {
	if s.cfg.FetchBytes <= 0 {
		return jetstream.PullMaxMessages(2 * s.cfg.BatchSize)
	}
	// A pull request whose max_bytes is below the next message's size is
	// answered 409 "Message Size Exceeds MaxBytes" and delivers nothing,
	// so the budget is never below two messages of the largest size the
	// server accepts (larger events are in the object store, their
	// pointers small).
	limit := max(s.cfg.FetchBytes, 2*s.js.Conn().MaxPayload())
	return jetstream.PullMaxMessagesWithBytesLimit(2*s.cfg.BatchSize, int(limit))
}

// applyLoop is the apply side's bookkeeping of one consume.
type applyLoop struct {
	s     *Sink
	asm   *assembler
	fence *state.Fence
	// maxSeq is the highest sequence delivered; floor the recorded one.
	maxSeq, floor uint64
	// lastDue and lastExpiry are when due waits and expired transactions
	// were last looked for.
	lastDue, lastExpiry time.Time
	// moreDue: the last read of due waits was full, so the loop reads on
	// without waiting for the reader.
	moreDue bool
}

// run turns chunks into batches and applies each (applyWithRetry) until
// ctx ends (nil), the reader fails (its error) or a batch fails for good.
// Only after a batch committed does the floor, and the committed
// position the reader acknowledges redeliveries by, move.
func (l *applyLoop) run(ctx context.Context, chunks <-chan chunk) error {
	for {
		c, ok := l.next(ctx, chunks)
		if !ok {
			return nil
		}
		if c.err != nil {
			return c.err
		}
		l.s.metrics.Alive()
		b, err := l.batch(ctx, c.items)
		if err != nil {
			return err
		}
		if len(b.units) == 0 && len(b.spill) == 0 && b.floor <= l.floor {
			continue
		}
		if err := l.s.applyWithRetry(ctx, b); err != nil {
			return err
		}
		l.floor = max(l.floor, b.floor)
		l.s.committed.Store(l.floor)
	}
}

// next is the reader's next chunk; while due waits are left to read, an
// empty chunk when none is ready. false: ctx ended.
func (l *applyLoop) next(ctx context.Context, chunks <-chan chunk) (chunk, bool) {
	var c chunk
	if l.moreDue {
		select {
		case <-ctx.Done():
			return c, false
		case c = <-chunks:
		default:
		}
		return c, true
	}
	select {
	case <-ctx.Done():
		return c, false
	case c = <-chunks:
	}
	return c, true
}

// batch assembles the next batch: the units items complete (their
// spilled parts loaded back), the waits whose next try has come (every
// second, or at once while more are due), the transactions past
// Config.TxnTimeout (every second), the open transactions' parts to spill
// (too many in memory, or held past Config.TxnSpillAfter), and the floor:
// the highest sequence delivered, but below every part held in memory.
func (l *applyLoop) batch(ctx context.Context, items []*item) (Batch, error) {
	s := l.s
	for _, it := range items {
		l.asm.add(it)
		l.maxSeq = max(l.maxSeq, it.seq)
	}
	b := Batch{units: l.asm.take(), waitRoom: max(s.cfg.MaxWaiting-int(s.waiting), 0), fence: l.fence}
	if err := l.loadSpilled(ctx, b.units); err != nil {
		return b, err
	}
	now := time.Now()
	readOn := l.moreDue
	l.moreDue = false
	if s.waiting > 0 && (now.Sub(l.lastDue) >= time.Second || readOn) {
		l.lastDue = now
		due, n, err := l.dueWaits(ctx, now)
		if err != nil {
			return b, err
		}
		l.moreDue = n >= s.cfg.BatchSize
		b.units = append(b.units, due...)
	}
	if now.Sub(l.lastExpiry) >= time.Second {
		l.lastExpiry = now
		exp, err := l.expire(ctx, now)
		if err != nil {
			return b, err
		}
		b.units = append(b.units, exp...)
	}
	if l.asm.memItems > 0 && (l.asm.memItems >= s.cfg.BatchSize || now.Sub(l.asm.oldestMem()) >= s.cfg.TxnSpillAfter) {
		b.spill = l.asm.spill()
	}
	b.floor = l.maxSeq
	if m := l.asm.minOpenSeq(); m > 0 {
		b.floor = m - 1
	}
	return b, nil
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

// applyWithRetry applies b, retrying retryable errors until ctx ends,
// then acknowledges its messages. While batches fail, the sink reports it
// (SetFailing), and past FailingAfter it says so at error level.
func (s *Sink) applyWithRetry(ctx context.Context, b Batch) error {
	size := 0
	for _, u := range b.units {
		size += len(u.items)
	}
	retry := backoff.New(s.retry)
	for {
		start := time.Now()
		res, err := s.applier.Apply(ctx, b)
		if err == nil {
			s.recovered()
			s.committed.Store(max(s.committed.Load(), b.floor))
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
		if class == fault.Fatal {
			return fault.Fatal.Errorf("sink: %w", err)
		}
		s.metrics.Retry(class)
		s.failing(err, class)
		wait := retry.Next()
		s.log.Warn("apply failed, retrying the batch", zap.Error(err), zap.String("class", class.String()),
			zap.Int("events", size), zap.Duration("retry_in", wait))
		if !sleep(ctx, wait) {
			return nil
		}
		// Keep the messages from being redelivered while Postgres is away.
		if retry.Attempt()%5 == 0 {
			forEachMsg(b, func(m jetstream.Msg) { _ = m.InProgress() })
		}
	}
}

func (s *Sink) failing(err error, class fault.Class) {
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
		s.log.Warn("events dead-lettered", zap.Int("count", res.DeadLettered), zap.Uint64("floor", b.floor))
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
