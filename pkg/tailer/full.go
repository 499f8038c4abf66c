package tailer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
)

// fullLogEvery is how often a stream that stays full is logged again.
const fullLogEvery = time.Minute

// fullState tracks publishes refused by a full change stream (discard
// policy new). Nothing is skipped meanwhile: each refusal ends the session
// and Run retries from the checkpoint with backoff, MongoDB's oplog holding
// the changes (oplog headroom says for how long).
type fullState struct {
	active        bool
	since, logged time.Time
}

// refused is the error of a publish JetStream did not acknowledge,
// classified by the session's publisher (bus.Publisher.Refused, as
// snapshot and replay classify theirs): a *bus.StreamFullError when the
// message's stream (its lane's) is full, a *bus.NoStreamError when no
// expected stream captured it.
//
// Waiting on the futures stays in drain, not in the bus publisher: the
// tailer's in-flight window is also its checkpoint queue (tokens without
// an event between the events, each durable only once every publish
// before it is acknowledged), and the bounds that make it wait
// (MaxInFlight, MaxInFlightBytes, or everything at finish) are the
// tailer's. PublishBatch's wait-for-all would serialise the pipeline.
func (t *Tailer) refused(ctx context.Context, st *state, ack jetstream.PubAckFuture, err error) error {
	return fmt.Errorf("publish not acknowledged: %w", st.pub.Refused(ctx, ack.Msg(), err))
}

// streamFull reports whether err is a full stream's refusal; if so it
// counts it and logs it at error level, at most once a minute however
// often the stream fills and drains meanwhile.
func (t *Tailer) streamFull(err error) bool {
	var full *bus.StreamFullError
	if !errors.As(err, &full) {
		return false
	}
	now := t.clock.Now()
	t.metrics.StreamFull(true)
	if !t.full.active {
		t.full.since = now
	}
	if t.full.logged.IsZero() || now.Sub(t.full.logged) >= fullLogEvery {
		limit := fmt.Sprintf("max_bytes=%d", full.MaxBytes)
		if full.MaxMsgs > 0 && full.Msgs >= uint64(full.MaxMsgs) {
			limit = fmt.Sprintf("max_msgs=%d", full.MaxMsgs)
		}
		t.log.Error(fmt.Sprintf("stream %s is full (%s): publishing paused until the sink frees space or the limit is raised", full.Stream, limit),
			zap.String("stream", full.Stream), zap.Int64("max_bytes", full.MaxBytes), zap.Int64("max_msgs", full.MaxMsgs),
			zap.Uint64("bytes", full.Bytes), zap.Uint64("msgs", full.Msgs), zap.Duration("paused_for", now.Sub(t.full.since)))
		t.full.logged = now
	}
	t.full.active = true
	return true
}

// roomAgain notes an acknowledged publish: a full stream has room again.
func (t *Tailer) roomAgain() {
	if !t.full.active {
		return
	}
	t.full.active = false
	t.metrics.StreamFull(false)
	t.log.Info("stream has room again: publishing resumed", zap.String("stream", t.cfg.Streams.Stream),
		zap.Duration("paused_for", t.clock.Now().Sub(t.full.since)))
}
