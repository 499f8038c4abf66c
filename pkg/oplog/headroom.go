package oplog

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/event"
)

// Estimate is a checkpoint's headroom against the oplog window.
type Estimate struct {
	// Checkpoint, Oldest and Newest are the inputs.
	Checkpoint, Oldest, Newest event.ClusterTime
	// Window is Newest - Oldest: how much history the oplog holds.
	Window time.Duration
	// Lag is Newest - Checkpoint: how far the checkpoint trails the
	// newest entry (0 when it is at or past it).
	Lag time.Duration
	// Headroom is Checkpoint - Oldest: at the current roll-over rate the
	// oldest entry trails the newest by Window, so the checkpoint falls
	// off in about this long if it stops advancing (Window - Lag). Zero
	// or negative when Lost.
	Headroom time.Duration
	// Lost reports a checkpoint older than the oldest entry: a resume
	// from it fails with ChangeStreamHistoryLost (286).
	Lost bool
	// ChainStart, when set, is the first entry of the chained transaction
	// whose commit the checkpoint is at (ResumeFloor): Headroom and Lost
	// are measured from it, not from Checkpoint.
	ChainStart *event.ClusterTime
}

// Headroom computes the estimate for a checkpoint at cluster time
// checkpoint against an oplog holding [oldest, newest]. It is pure: read
// the window with Window and the checkpoint from the tailer's store.
// Durations have one-second resolution (cluster times count seconds).
func Headroom(checkpoint, oldest, newest event.ClusterTime) Estimate {
	secs := func(a, b event.ClusterTime) time.Duration {
		return time.Duration(int64(a.T)-int64(b.T)) * time.Second
	}
	e := Estimate{
		Checkpoint: checkpoint, Oldest: oldest, Newest: newest,
		Window:   secs(newest, oldest),
		Lag:      max(secs(newest, checkpoint), 0),
		Headroom: secs(checkpoint, oldest),
		Lost:     checkpoint.Compare(oldest) < 0,
	}
	if e.Lost && e.Headroom == 0 {
		// Same second, older increment: still lost.
		e.Headroom = -time.Nanosecond
	}
	return e
}

// Low reports whether the checkpoint is lost or its headroom is below
// threshold. A threshold <= 0 only reports lost checkpoints.
func (e Estimate) Low(threshold time.Duration) bool {
	return e.Lost || (threshold > 0 && e.Headroom < threshold)
}

// Fields are the estimate as structured log fields.
func (e Estimate) Fields() []zap.Field {
	f := []zap.Field{
		zap.Stringer("checkpoint_cluster_time", e.Checkpoint),
		zap.Time("checkpoint_time", e.Checkpoint.Time()),
		zap.Stringer("oplog_oldest", e.Oldest),
		zap.Time("oplog_oldest_time", e.Oldest.Time()),
		zap.Stringer("oplog_newest", e.Newest),
		zap.Duration("oplog_window", e.Window),
		zap.Duration("lag", e.Lag),
		zap.Duration("headroom", e.Headroom),
		zap.Bool("lost", e.Lost),
	}
	if e.ChainStart != nil {
		f = append(f, zap.Stringer("txn_chain_start", e.ChainStart))
	}
	return f
}

// Warn logs e at warn level (error level when lost) if it is Low and
// reports whether it did.
func Warn(log *zap.Logger, e Estimate, threshold time.Duration) bool {
	if !e.Low(threshold) {
		return false
	}
	fields := append(e.Fields(), zap.Duration("threshold", threshold))
	if e.Lost {
		log.Error("the tailer checkpoint has fallen off the oplog: resuming from it will fail with ChangeStreamHistoryLost (286); "+
			"re-snapshot the collections (cdc snapshot), which also resets the tailer to the snapshot's start", fields...)
		return true
	}
	log.Warn("oplog headroom of the tailer checkpoint is below the threshold: if the tailer stops or falls further behind "+
		"for longer than the headroom, its resume point falls off the oplog; grow the oplog or fix the lag", fields...)
	return true
}

// CheckpointFunc returns the tailer's current checkpoint cluster time; ok
// is false when there is no checkpoint yet.
type CheckpointFunc func(ctx context.Context) (ct event.ClusterTime, ok bool, err error)

// Monitor checks the headroom of the tailer's checkpoint periodically.
// Create it as a struct literal; Run blocks.
type Monitor struct {
	// Client reads the oplog window.
	Client *mongo.Client
	// Checkpoint reads the checkpoint's cluster time (use TokenTime on
	// the stored resume token: it advances on idle streams too).
	Checkpoint CheckpointFunc
	// Threshold below which a warning is logged (oplog.headroom_warning).
	Threshold time.Duration
	// Interval between checks; default one minute.
	Interval time.Duration
	// Log receives the warnings and failed checks.
	Log *zap.Logger
	// Observe, when set, receives every estimate (metrics, status).
	Observe func(Estimate)
}

// Check reads the window and the checkpoint once. ok is false when there
// is no checkpoint.
func (m *Monitor) Check(ctx context.Context) (e Estimate, ok bool, err error) {
	ct, ok, err := m.Checkpoint(ctx)
	if err != nil || !ok {
		return e, false, err
	}
	oldest, newest, err := Window(ctx, m.Client)
	if err != nil {
		return e, false, err
	}
	e, err = Measure(ctx, m.Client, ct, oldest, newest)
	return e, err == nil, err
}

// Measure is Headroom for a checkpoint at ct against the window [oldest,
// newest] read from client, measured from what a resume at ct needs
// (ResumeFloor: the first entry of a chained transaction committed at ct).
func Measure(ctx context.Context, client *mongo.Client, ct, oldest, newest event.ClusterTime) (Estimate, error) {
	floor, err := ResumeFloor(ctx, client, ct)
	if err != nil {
		return Estimate{}, err
	}
	e := Headroom(floor, oldest, newest)
	if floor != ct {
		e.Checkpoint, e.ChainStart = ct, &floor
		e.Lag = Headroom(ct, oldest, newest).Lag
	}
	return e, nil
}

// Run checks every Interval until ctx ends, then returns nil. A check
// that fails is logged and retried at the next interval: the monitor is
// advisory and never stops the tailer.
func (m *Monitor) Run(ctx context.Context) error {
	interval := m.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		e, ok, err := m.Check(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			m.Log.Warn("oplog headroom check failed", zap.Error(err))
		case ok:
			if m.Observe != nil {
				m.Observe(e)
			}
			Warn(m.Log, e, m.Threshold)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
