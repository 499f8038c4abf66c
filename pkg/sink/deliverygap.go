package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
)

// ErrDeliverySkipped means the consumer delivered a sequence past the
// next one the sink needs while the stream still holds that one: the
// messages in between were delivered into a connection that died (the
// NATS node the sink was connected to was lost with them in flight; the
// client reconnects to another node and its pull goes on from the
// consumer's delivered sequence, the skipped ones coming back only after
// AckWait), or were dropped by a slow-consumer client. Retryable: the
// sink re-reads from its position with a fresh consumer (reconcile).
var ErrDeliverySkipped = errors.New("the consumer skipped messages the stream still holds")

// deliveryGap explains a delivered sequence seq past next. Only a stream
// that answers that it no longer has message next (jetstream's
// ErrMsgNotFound, the server's JSErrCodeMessageNotFound) is a gap that
// stops the sink (ErrStreamGap); a message still there, or a stream that
// cannot say (a leader election under way), is a delivery problem that
// a fresh consumer at the position resolves.
func (s *Sink) deliveryGap(ctx context.Context, next, seq uint64) error {
	name := s.cfg.Streams.Stream
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(gctx, name)
	if err == nil {
		_, err = st.GetMsg(gctx, next)
	}
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return gapError(name, state.Position{Seq: next - 1, ClusterTime: event.Unpack(s.lastApplied.Load())}, seq)
	case err != nil:
		return fmt.Errorf("%w: stream %s delivered sequence %d after %d, and whether it still holds %d is unknown: %w",
			ErrDeliverySkipped, name, seq, next-1, next, err)
	}
	return fmt.Errorf("%w: stream %s delivered sequence %d after %d but holds %d: re-reading from the position",
		ErrDeliverySkipped, name, seq, next-1, next)
}

// ErrReaderStalled means the sink's pull subscription receives nothing
// although the consumer has messages for it and room to deliver them, and
// no pull request of the sink is waiting at the server: the request was
// lost with the NATS node that held the consumer's leader (nats.go notices
// a missing heartbeat only when a single Next call outlasts twice the
// heartbeat, which the sink's short Next calls never do, and no reconnect
// happens to renew it when the sink's own connection survives).
// Retryable: the sink re-reads from its position with a fresh consumer.
var ErrReaderStalled = errors.New("the sink's pull subscription stalled")

// readerStallAfter is how long the reader may receive nothing before it
// asks the consumer whether it should have (one consumer info request per
// period while idle).
const readerStallAfter = 30 * time.Second

// pullStalled reports whether ci describes a consumer that has messages
// to deliver (pending), room to deliver them (ack pending below its
// limit) and no pull request waiting for them: nothing will arrive.
func pullStalled(ci *jetstream.ConsumerInfo) bool {
	room := ci.Config.MaxAckPending <= 0 || ci.NumAckPending < ci.Config.MaxAckPending
	return ci.NumPending > 0 && ci.NumWaiting == 0 && room
}

// checkStalled is pullStalled on the consumer's current info; an info
// request that fails is left to the next period (the apply path reports
// NATS being away).
func (s *Sink) checkStalled(ctx context.Context, cons jetstream.Consumer) error {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ci, err := cons.Info(ictx)
	if err != nil || !pullStalled(ci) {
		return nil
	}
	return fmt.Errorf("%w: consumer %s has %d messages pending and %d of %d acknowledgements outstanding, but no pull request waiting and nothing arrived for %s: re-reading from the position",
		ErrReaderStalled, ci.Name, ci.NumPending, ci.NumAckPending, ci.Config.MaxAckPending, readerStallAfter)
}
