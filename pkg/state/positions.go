package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
)

// lockClass is the first key of the fence's advisory lock ("cdc1"), so the
// lock cannot collide with the application's own advisory locks, which
// use the one-argument form or other classes.
const lockClass int32 = 0x63646331

// Position is a consumer's row of cdc.sink_positions.
type Position struct {
	Consumer string
	Stream   string
	// Seq is the low-water mark (see the package doc).
	Seq uint64
	// StreamCreated identifies the stream Seq belongs to; zero when the row
	// predates it (or nothing was applied yet).
	StreamCreated time.Time
	// ClusterTime is the newest cluster time applied.
	ClusterTime event.ClusterTime
	AppliedAt   time.Time
	// Owner and Epoch are the fence; FencedAt is when Owner took it.
	Owner    string
	Epoch    int64
	FencedAt time.Time
}

const positionColumns = `consumer, stream, stream_seq, coalesce(stream_created, 'epoch'::timestamptz), coalesce(cluster_time, 0),
	applied_at, coalesce(owner, ''), epoch, coalesce(fenced_at, 'epoch'::timestamptz)`

func scanPosition(row pgx.Row) (Position, error) {
	var p Position
	var seq, ct int64
	if err := row.Scan(&p.Consumer, &p.Stream, &seq, &p.StreamCreated, &ct, &p.AppliedAt, &p.Owner, &p.Epoch, &p.FencedAt); err != nil {
		return p, err
	}
	p.Seq, p.ClusterTime = uint64(seq), event.Unpack(ct)
	if p.StreamCreated.Equal(time.Unix(0, 0)) {
		p.StreamCreated = time.Time{}
	}
	if p.FencedAt.Equal(time.Unix(0, 0)) {
		p.FencedAt = time.Time{}
	}
	return p, nil
}

// ReadPosition returns the consumer's position; ok is false when it has
// none.
func ReadPosition(ctx context.Context, db DB, consumer string) (p Position, ok bool, err error) {
	p, err = scanPosition(db.QueryRow(ctx, `SELECT `+positionColumns+` FROM cdc.sink_positions WHERE consumer = $1`, consumer))
	if errors.Is(err, pgx.ErrNoRows) {
		return Position{}, false, nil
	}
	if err != nil {
		return Position{}, false, fmt.Errorf("read position of %s: %w", consumer, err)
	}
	return p, true, nil
}

// Connector opens the fence's own connection (not a pooled one: the lock
// lives as long as that session).
type Connector func(ctx context.Context) (*pgx.Conn, error)

// Fence is one instance's hold on a consumer. Create with AcquireFence;
// Release ends it. Check and Advance run inside the caller's apply
// transaction.
type Fence struct {
	consumer string
	owner    string
	epoch    int64

	conn     *pgx.Conn
	mu       sync.Mutex // serialises use of conn
	lost     chan struct{}
	lostOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// AcquireFence takes consumer for owner: it locks the consumer's advisory
// lock on a connection of its own and writes a new epoch into the position
// row (creating the row, at sequence 0, if there is none). When another
// live instance holds the lock it returns a *HeldError (ErrHeld). The
// returned position is the row as this instance took it.
//
// The lock session is pinged every pingEvery (0: never); when it fails,
// Lost is closed. The fence stays correct without it (Check compares epochs), but
// the instance should take the consumer again.
func AcquireFence(ctx context.Context, connect Connector, consumer, stream, owner string, pingEvery time.Duration) (*Fence, Position, error) {
	conn, err := connect(ctx)
	if err != nil {
		return nil, Position{}, fmt.Errorf("fence connection: %w", err)
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockClass, consumer).Scan(&got); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, Position{}, fmt.Errorf("fence lock of %s: %w", consumer, err)
	}
	if !got {
		defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
		held := &HeldError{Consumer: consumer}
		p, ok, err := ReadPosition(ctx, conn, consumer)
		if err != nil {
			return nil, Position{}, err
		}
		if ok {
			held.Owner, held.Epoch, held.Since = p.Owner, p.Epoch, p.FencedAt
		}
		return nil, Position{}, held
	}
	var p Position
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO cdc.sink_positions (consumer, stream, stream_seq) VALUES ($1, $2, 0)
			ON CONFLICT (consumer) DO NOTHING`, consumer, stream); err != nil {
			return err
		}
		var err error
		p, err = scanPosition(tx.QueryRow(ctx, `UPDATE cdc.sink_positions
			SET epoch = epoch + 1, owner = $2, fenced_at = now()
			WHERE consumer = $1 RETURNING `+positionColumns, consumer, owner))
		return err
	})
	if err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, Position{}, fmt.Errorf("take consumer %s: %w", consumer, err)
	}
	f := &Fence{consumer: consumer, owner: owner, epoch: p.Epoch, conn: conn,
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	if pingEvery > 0 {
		go f.watch(pingEvery)
	} else {
		close(f.done) // a short-lived hold (an operator command) needs no watch
	}
	return f, p, nil
}

func (f *Fence) watch(every time.Duration) {
	defer close(f.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(every, time.Second))
		f.mu.Lock()
		err := f.conn.Ping(ctx)
		f.mu.Unlock()
		cancel()
		if err != nil {
			f.lostOnce.Do(func() { close(f.lost) })
			return
		}
	}
}

// Lost is closed when the lock session fails.
func (f *Fence) Lost() <-chan struct{} { return f.lost }

// Epoch is the epoch this instance holds.
func (f *Fence) Epoch() int64 { return f.epoch }

// Owner is this instance's identity.
func (f *Fence) Owner() string { return f.owner }

// Release stops the watch and closes the lock session (the lock goes with
// it). The position row keeps the owner and epoch for the record.
func (f *Fence) Release(ctx context.Context) {
	close(f.stop)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	// Unlock before closing: the server frees a closed session's locks
	// only once its backend has noticed the disconnect, so a new instance
	// that starts right after could still find the lock held. A failed
	// unlock (connection already gone) leaves it to the session's end.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = f.conn.Exec(uctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockClass, f.consumer)
	_ = f.conn.Close(uctx)
}

// Check locks the consumer's row in tx (FOR UPDATE, so concurrent batches
// serialise on it) and fails with a *FencedError when another instance
// took the consumer since this one did. Call it first in every apply
// transaction.
func (f *Fence) Check(ctx context.Context, tx DB) (Position, error) {
	p, err := scanPosition(tx.QueryRow(ctx, `SELECT `+positionColumns+` FROM cdc.sink_positions WHERE consumer = $1 FOR UPDATE`, f.consumer))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, &FencedError{Consumer: f.consumer, Epoch: f.epoch, Owner: "(position row deleted)"}
	}
	if err != nil {
		return p, fmt.Errorf("fence check of %s: %w", f.consumer, err)
	}
	if p.Epoch != f.epoch {
		return p, &FencedError{Consumer: f.consumer, Epoch: f.epoch, Current: p.Epoch, Owner: p.Owner}
	}
	return p, nil
}

// Advance records seq (and the newest applied cluster time) in tx, after
// Check. The position never moves backwards.
func (f *Fence) Advance(ctx context.Context, tx DB, seq uint64, ct event.ClusterTime) error {
	tag, err := tx.Exec(ctx, `UPDATE cdc.sink_positions
		SET stream_seq = GREATEST(stream_seq, $2), cluster_time = GREATEST(coalesce(cluster_time, 0), $3), applied_at = now()
		WHERE consumer = $1 AND epoch = $4`, f.consumer, int64(seq), ct.Pack(), f.epoch)
	if err != nil {
		return fmt.Errorf("record position of %s: %w", f.consumer, err)
	}
	if tag.RowsAffected() != 1 {
		return &FencedError{Consumer: f.consumer, Epoch: f.epoch, Owner: "(unknown)"}
	}
	return nil
}

// Reposition sets the position to seq of the stream created at created,
// under the fence. It is the recovery for a stream that is not the one the
// position belongs to (adopt it) and the way a new position row records
// its stream. Unlike Advance it may move the position backwards: the
// caller decides (an operator command, or the first record of a stream).
func (f *Fence) Reposition(ctx context.Context, db DB, stream string, created time.Time, seq uint64) error {
	tag, err := db.Exec(ctx, `UPDATE cdc.sink_positions SET stream = $2, stream_created = $3, stream_seq = $4, applied_at = now()
		WHERE consumer = $1 AND epoch = $5`, f.consumer, stream, created, int64(seq), f.epoch)
	if err != nil {
		return fmt.Errorf("reposition %s: %w", f.consumer, err)
	}
	if tag.RowsAffected() != 1 {
		return &FencedError{Consumer: f.consumer, Epoch: f.epoch, Owner: "(unknown)"}
	}
	return nil
}
