package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/state"
)

// Reposition is the operator's recovery when the sink stopped because the
// stream is not the one its position belongs to (StreamChangedError) or
// lost messages after it (ErrStreamGap): it records the stream as it is
// now and sets the position to seq, or, when seq is nil, to just before
// the stream's first message (the sink then applies the whole stream; the
// version guard skips what is applied already). It takes the consumer's
// fence, so it refuses (ErrHeld) while a sink runs. It returns the
// position before and after.
func Reposition(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, consumer, streamName, owner string, seq *uint64) (before, after state.Position, err error) {
	connect := func(ctx context.Context) (*pgx.Conn, error) {
		return pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	}
	fence, pos, err := state.AcquireFence(ctx, connect, consumer, streamName, owner, 0)
	if err != nil {
		return before, after, err
	}
	defer fence.Release(context.WithoutCancel(ctx))
	stream, err := js.Stream(ctx, streamName)
	if err != nil {
		return pos, after, fmt.Errorf("stream %s: %w", streamName, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return pos, after, fmt.Errorf("stream %s info: %w", streamName, err)
	}
	to := uint64(0)
	if info.State.FirstSeq > 0 {
		to = info.State.FirstSeq - 1
	}
	if seq != nil {
		to = *seq
		if to > info.State.LastSeq {
			return pos, after, fmt.Errorf("sequence %d is past the end of stream %s (%d)", to, streamName, info.State.LastSeq)
		}
	}
	created := streamCreated(info)
	if err := fence.Reposition(ctx, pool, streamName, created, to); err != nil {
		return pos, after, err
	}
	after, _, err = state.ReadPosition(ctx, pool, consumer)
	return pos, after, err
}

// connectFence opens the fence's own session with the pool's settings.
func (s *Sink) connectFence(ctx context.Context) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
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
