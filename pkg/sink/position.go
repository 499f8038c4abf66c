package sink

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

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
