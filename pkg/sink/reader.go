package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// chunk is what the reader hands the apply loop: decoded items in
// stream order, or the error that ended reading.
type chunk struct {
	items []*item
	err   error
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

// collect reads up to BatchSize messages, or what came while it waited
// BatchWait in all since the first one, or nothing within a second. Only
// the waiting counts, not the decoding: messages the client holds
// already are taken at once, so a backlog is applied in full batches
// (decoding a full batch takes longer than BatchWait; counting it cut
// backlog batches to a third of BatchSize).
func (s *Sink) collect(ctx context.Context, it jetstream.MessagesContext, next uint64) ([]*item, uint64, error) {
	var items []*item
	deadline := time.Now().Add(time.Second)
	var waited time.Duration // blocked in Next since the first message
	for len(items) < s.cfg.BatchSize {
		wait := time.Until(deadline)
		if len(items) > 0 {
			wait = s.cfg.BatchWait - waited
		}
		if wait <= 0 {
			break
		}
		nctx, cancel := context.WithTimeout(ctx, wait)
		t0 := time.Now()
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if len(items) > 0 {
			waited += time.Since(t0)
		}
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
	}
	return items, next, nil
}
