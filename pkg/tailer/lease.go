package tailer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/checkpoint"
)

// leaseMarginDivisor sets the lease's safety margin: the holder's lease
// lasts StandbyTakeover - StandbyTakeover/leaseMarginDivisor after the
// start of its last successful write (8 s of the default 10 s). Config
// requires StandbyTakeover > 2 × max(checkpoint_interval, max_await), so
// the lease always outlasts 1.6 heartbeat intervals: one slow write does
// not stop publishing. The argument for the margin is in fence.go.
const leaseMarginDivisor = 5

// HeaderTailer names the tailer that published a message: its Owner
// identity ("<instance>:<pid>:<nonce>"). Informational (who published what,
// in the stream and on the wire); nothing reads it to decide anything.
const HeaderTailer = "Cdc-Tailer"

// Hooks are test hooks into the publish path; nil fields do nothing.
// Production code never sets them.
type Hooks struct {
	// BeforePublish runs before each publish, before the lease check: a
	// hook that blocks plays a holder frozen in its publish path (a long GC
	// pause, a network stall); on waking, the lease check stops it.
	BeforePublish func(ctx context.Context)
	// AfterLeaseCheck runs between the lease check and the publish: a hook
	// that blocks plays the one stall the lease cannot cover (fence.go),
	// whose late publish must be a duplicate.
	AfterLeaseCheck func(ctx context.Context)
}

// leaseTTL is how long a successful write's lease lasts.
func (t *Tailer) leaseTTL() time.Duration {
	return t.cfg.StandbyTakeover - t.cfg.StandbyTakeover/leaseMarginDivisor
}

// tenure is the lease history a holder's writes carry.
type tenure struct {
	heldSince *time.Time
	last      *checkpoint.Takeover
	takeovers uint64
}

func tenureOf(cp *checkpoint.Checkpoint) tenure {
	return tenure{heldSince: cp.HeldSince, last: cp.LastTakeover, takeovers: cp.Takeovers}
}

// apply stores te in cp; a tenure without a start begins now (cp's
// UpdatedAt: the write's own time).
func (te tenure) apply(cp *checkpoint.Checkpoint) {
	if te.heldSince == nil {
		at := cp.UpdatedAt
		if at.IsZero() {
			at = time.Now().UTC()
		}
		te.heldSince = &at
	}
	cp.HeldSince, cp.LastTakeover, cp.Takeovers = te.heldSince, te.last, te.takeovers
}

// claimTenure sets the lease history of claim, this tailer's claim of the
// stored checkpoint cp, and returns the takeover it records (nil: none).
// A tailer continuing its own tenure (its own checkpoint, or a snapshot's
// hand-off of the checkpoint it held) keeps it; otherwise a new tenure
// begins, and taking over another tailer's checkpoint (released, or
// unchanged for StandbyTakeover) is recorded as a takeover. A version 1
// checkpoint or a hand-off names no previous tailer: no takeover.
func (t *Tailer) claimTenure(cp, claim *checkpoint.Checkpoint) *checkpoint.Takeover {
	now := t.clock.Now().UTC()
	switch {
	case cp.Owner == t.cfg.Owner && t.lease.holding:
		te := tenureOf(cp)
		if te.heldSince == nil {
			te.heldSince = &now
		}
		te.apply(claim)
		return nil
	case cp.Handoff && t.lease.holding:
		t.lease.tenure.apply(claim)
		return nil
	}
	te := tenure{heldSince: &now, last: cp.LastTakeover, takeovers: cp.Takeovers}
	var tk *checkpoint.Takeover
	switch {
	case cp.Owner == "" || cp.Handoff || cp.Owner == t.cfg.Owner:
	case cp.Released:
		tk = &checkpoint.Takeover{At: now, From: cp.Owner, To: t.cfg.Owner, Reason: checkpoint.TakeoverReleased, FromLastWrite: cp.UpdatedAt}
	default:
		tk = &checkpoint.Takeover{At: now, From: cp.Owner, To: t.cfg.Owner, Reason: checkpoint.TakeoverExpired, FromLastWrite: cp.UpdatedAt,
			QuietMillis: t.lease.quiet.Milliseconds()}
	}
	if tk != nil {
		te.last = tk
		te.takeovers++
	}
	te.apply(claim)
	return tk
}

// claimed reports a successful claim's takeover (tk nil: none).
func (t *Tailer) claimed(tk *checkpoint.Takeover) {
	t.lease.quiet = 0
	if tk == nil {
		return
	}
	t.metrics.TookOver(*tk)
	t.log.Info(fmt.Sprintf("took over checkpoint %s from %s (%s)", t.key, tk.From, tk.Reason), zap.String("key", t.key),
		zap.String("from", tk.From), zap.String("self", t.cfg.Owner), zap.String("reason", tk.Reason),
		zap.Time("from_last_write", tk.FromLastWrite), zap.Int64("quiet_ms", tk.QuietMillis), zap.Uint64("takeovers", t.lease.tenure.takeovers))
}

// renewed records a successful write that started at start: the lease
// runs leaseTTL from then, or ends with a release.
func (t *Tailer) renewed(start time.Time, released bool) {
	if released {
		t.lease.until, t.lease.holding = time.Time{}, false
		t.leaseValid(false)
		return
	}
	t.lease.until, t.lease.holding = start.Add(t.leaseTTL()), true
	t.leaseValid(true)
}

// lost ends the lease: a write found the checkpoint moved, or a standby
// begins.
func (t *Tailer) lost() {
	t.lease.until = time.Time{}
	t.leaseValid(false)
}

// leaseValid reports a change of whether this tailer holds a valid lease.
func (t *Tailer) leaseValid(valid bool) {
	if valid == t.lease.valid {
		return
	}
	t.lease.valid = valid
	if !valid {
		t.metrics.Lease(false, time.Time{})
		return
	}
	var since time.Time
	if t.lease.tenure.heldSince != nil {
		since = *t.lease.tenure.heldSince
	}
	t.metrics.Lease(true, since)
}

// errLeaseNotRenewed: a renewal wrote nothing (the session has lost its
// checkpoint already); the session ends.
var errLeaseNotRenewed = errors.New("the tailer's lease could not be renewed: this session publishes no more")

// mayPublish is the lease check before a publish (with the test hooks
// around it). While the lease is valid it returns nil at once. Past it,
// it publishes nothing until a revision-checked renewal of the durable
// checkpoint succeeds: it returns nil after one, the *checkpoint.MovedError of one
// that found the checkpoint moved (Run stands by or restarts), or the
// store's error (Run retries; nothing is published meanwhile).
func (t *Tailer) mayPublish(ctx context.Context, st *state) error {
	if h := t.cfg.Hooks.BeforePublish; h != nil {
		h(ctx)
	}
	if err := t.checkLease(ctx, st); err != nil {
		return err
	}
	if h := t.cfg.Hooks.AfterLeaseCheck; h != nil {
		h(ctx)
	}
	return nil
}

func (t *Tailer) checkLease(ctx context.Context, st *state) error {
	if st.durable == nil {
		// No checkpoint yet: nothing to fence with (fence.go).
		return nil
	}
	now := t.clock.Now()
	if now.Before(t.lease.until) {
		return nil
	}
	if t.lease.until.IsZero() && !t.lease.holding {
		// The session's first checkpoint (it started without one) is not
		// written yet: write it now, before publishing more.
		if err := t.save(ctx, st, false); err != nil {
			return fmt.Errorf("creating the tailer's checkpoint: %w", err)
		}
		return nil
	}
	t.leaseValid(false)
	t.metrics.LeaseLapsed()
	var over time.Duration
	if !t.lease.until.IsZero() {
		over = now.Sub(t.lease.until)
	}
	t.log.Warn("the tailer's lease ran out before it was renewed: publishing nothing until a revision-checked write of the checkpoint succeeds",
		zap.String("key", t.key), zap.String("self", t.cfg.Owner), zap.Duration("lease", t.leaseTTL()), zap.Duration("overdue", over))
	if err := t.save(ctx, st, false); err != nil {
		return fmt.Errorf("renewing the tailer's lease: %w", err)
	}
	if !t.clock.Now().Before(t.lease.until) {
		return errLeaseNotRenewed
	}
	t.log.Info("the tailer's lease is renewed: publishing resumes", zap.String("key", t.key), zap.String("self", t.cfg.Owner))
	return nil
}
