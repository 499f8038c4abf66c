package bus

import (
	"context"
	"fmt"
	"math"

	"github.com/nats-io/nats.go/jetstream"
)

// trimRounds bounds TrimApplied's purges per call: each round estimates the
// cut from the stream's average message size and re-reads the state.
const trimRounds = 4

// TrimApplied frees space in a stream with a size limit (discard policy
// new refuses publishes once it is full) without losing anything its
// consumer has not applied. floor is the consumer's applied stream
// sequence, a true low-water mark: every message at or below it is
// resolved. When the stream holds more than highWater (0 < highWater <= 1,
// e.g. 0.8) of its MaxBytes or MaxMsgs, TrimApplied purges its oldest
// messages, never one above floor, until it holds at most half of each
// limit or everything at or below floor is gone. Otherwise it does
// nothing. A stream without limits is never trimmed.
//
// The purge is JetStream's purge up to a sequence, which removes the
// messages strictly below it (jetstream.WithPurgeSequence(floor+1) at
// most). The cut is estimated from the average message size, so the result
// is near, not exactly at, half the limit. purged is how many messages the
// stream lost during the call: the purges, plus any that age removed
// meanwhile. Purged messages cannot be replayed from the stream any more
// (cdc replay stream); an applied message is still in Postgres.
//
// Errors: an invalid highWater, the stream's info or the purge failing
// (wrapped, with the messages purged until then).
func TrimApplied(ctx context.Context, js jetstream.JetStream, stream string, floor uint64, highWater float64) (purged uint64, err error) {
	if !(highWater > 0 && highWater <= 1) {
		return 0, fmt.Errorf("trim stream %s: high water %v must be in (0, 1]", stream, highWater)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("trim stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("trim stream %s: %w", stream, err)
	}
	if !over(info.Config, info.State, highWater) {
		return 0, nil
	}
	for range trimRounds {
		cut := trimCut(info.Config, info.State, floor)
		if cut <= info.State.FirstSeq {
			return purged, nil
		}
		before := info.State
		if err := s.Purge(ctx, jetstream.WithPurgeSequence(cut)); err != nil {
			return purged, fmt.Errorf("trim stream %s below sequence %d: %w", stream, cut, err)
		}
		if info, err = s.Info(ctx); err != nil {
			return purged, fmt.Errorf("trim stream %s: %w", stream, err)
		}
		appended := info.State.LastSeq - min(before.LastSeq, info.State.LastSeq)
		if lost := before.Msgs + appended; lost > info.State.Msgs {
			purged += lost - info.State.Msgs
		}
		if cut > floor || !over(info.Config, info.State, 0.5) {
			return purged, nil
		}
	}
	return purged, nil
}

// over reports whether st holds more than frac of a limit of cfg.
func over(cfg jetstream.StreamConfig, st jetstream.StreamState, frac float64) bool {
	return (cfg.MaxBytes > 0 && float64(st.Bytes) > frac*float64(cfg.MaxBytes)) ||
		(cfg.MaxMsgs > 0 && float64(st.Msgs) > frac*float64(cfg.MaxMsgs))
}

// trimCut is the first sequence to keep so that the stream would hold half
// of each limit, assuming messages of its average size spread over its
// sequence span; never above floor+1.
func trimCut(cfg jetstream.StreamConfig, st jetstream.StreamState, floor uint64) uint64 {
	if st.Msgs == 0 || st.LastSeq < st.FirstSeq || floor < st.FirstSeq {
		return 0
	}
	var drop float64 // fraction of the stream to drop
	if cfg.MaxBytes > 0 && st.Bytes > uint64(cfg.MaxBytes/2) {
		drop = max(drop, 1-float64(cfg.MaxBytes/2)/float64(st.Bytes))
	}
	if cfg.MaxMsgs > 0 && st.Msgs > uint64(cfg.MaxMsgs/2) {
		drop = max(drop, 1-float64(cfg.MaxMsgs/2)/float64(st.Msgs))
	}
	span := st.LastSeq - st.FirstSeq + 1
	cut := st.FirstSeq + uint64(math.Ceil(drop*float64(span)))
	return min(cut, floor+1)
}

// ConsumersFloor is the lowest stream sequence that the durable or
// ephemeral consumers of stream other than except have acknowledged
// (their ack floor): what TrimApplied may purge without taking a message
// from under another reader (a second sink consumer, a running
// `cdc replay stream`). ok is false when there is no other consumer; by
// names the one holding the floor.
func ConsumersFloor(ctx context.Context, js jetstream.JetStream, stream, except string) (floor uint64, by string, ok bool, err error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, "", false, fmt.Errorf("consumers of stream %s: %w", stream, err)
	}
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		if ci.Name == except {
			continue
		}
		if !ok || ci.AckFloor.Stream < floor {
			floor, by, ok = ci.AckFloor.Stream, ci.Name, true
		}
	}
	if err := l.Err(); err != nil {
		return 0, "", false, fmt.Errorf("consumers of stream %s: %w", stream, err)
	}
	return floor, by, ok, nil
}
