package tailer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/checkpoint"
)

// The fence between tailers is the checkpoint itself (invariant: one
// writer at a time):
//
//   - Every write is checked against the revision this tailer last read or
//     wrote (its lease); a mismatch is a *checkpoint.MovedError and this tailer
//     writes no more until it has read the checkpoint again.
//   - A session first claims the checkpoint: it rewrites the one it just
//     loaded with its own Owner. It claims without waiting only a
//     checkpoint that is its own, released by a graceful stop, written by a
//     snapshot's hand-off, or from before the fence (version 1); one that
//     another tailer holds makes it stand by.
//   - The active tailer rewrites the checkpoint at least every checkpoint
//     interval, idle or retrying (a heartbeat), so its revision keeps
//     moving. A standby reads it every checkpoint interval and takes over
//     once the revision has not moved for StandbyTakeover; its claim is
//     itself revision-checked, so a holder that wrote meanwhile wins.
//
// The lease (lease.go): the holder publishes only while it can prove it
// still holds the checkpoint. Its lease runs from the start of its last
// successful write (taken before the write is sent, not when its ack
// arrives) for leaseTTL = StandbyTakeover minus a safety margin
// (StandbyTakeover/leaseMarginDivisor), on the monotonic clock (Go's
// time.Now carries a monotonic reading; Sub and Before use it). Before
// each publish (every event, and again before a large event's pointer) it
// checks the lease; past it, it publishes nothing until a
// revision-checked renewal succeeds, and a renewal that finds the
// checkpoint moved (*checkpoint.MovedError) makes it stand by.
//
// Why holder-deadline < standby-takeover holds without synchronised
// clocks: let R be the revision a standby's successful claim is checked
// against. R is the last revision written before the claim, so the
// holder's last successful write W_h is R or earlier, and the holder's
// lease started at the start of W_h, before R was committed. The standby
// measures its quiet period from when it read R (at the earliest R's
// commit, after W_h started; a read that fails restarts the period) and
// claims at least StandbyTakeover after that read. So, in real time,
//
//	holder deadline = start(W_h) + leaseTTL
//	               <= read(R) + StandbyTakeover - margin
//	               <= claim time - margin.
//
// Only durations measured by one process's own monotonic clock enter
// this: the holder's from its write's start, the standby's from its read.
// Neither clock's wall time, offset or NTP steps matter; the margin
// (StandbyTakeover/5: 2 s of the default 10 s) covers the two clocks'
// rate difference (a few hundred ppm at worst: milliseconds over 10 s) and
// the time between the holder's lease check and its message reaching the
// server. A write whose reply is lost renews nothing (the holder only
// counts writes it saw succeed), which only shortens its lease.
//
// What the lease cannot cover, and why it changes nothing: a holder that
// stalls after its lease check and before its message leaves the process
// (a GC pause at exactly that point, a socket buffer flushed when a
// stalled network returns) can land a message after the new holder's
// claim. Such a message is an event the tailer read from the change stream
// after its durable checkpoint, which the new holder resumes from: the new
// holder publishes the same event with the same Nats-Msg-Id (ids are
// derived from resume tokens), so within nats.dedup_window one of the two
// is dropped by JetStream, and past it the sink's version guard skips the
// older version of a document. No holder ever writes the checkpoint
// without the revision check, so a deposed holder cannot move the resume
// point either. A snapshot's hand-off is not a takeover: the running
// holder keeps its lease until its next write is refused, and restarts
// from the hand-off (every event it publishes meanwhile is re-read and
// deduplicated the same way).
//
// Before a session has a checkpoint (a first start from tailer.start_at)
// there is nothing to fence with: it publishes unfenced until its first
// write creates the checkpoint (revision-checked: of two first starters,
// one create wins, the other stands by; both published the same ids).

// clock is the tailer's time source; tests inject one.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// lease is what this tailer knows of its fence.
type lease struct {
	// rev is the revision this tailer may write over: the one it last
	// wrote, or the one it loaded to claim; 0 creates the checkpoint.
	rev uint64
	// cp is this tailer's last successful write (nil before one) and at
	// when it was made.
	cp *checkpoint.Checkpoint
	at time.Time
	// standing is set while this tailer stands by (reported to Metrics).
	standing bool
	// until is when the lease runs out: the start of the last successful
	// write plus leaseTTL, on the monotonic clock. Zero: no lease (never
	// written, deposed, or released).
	until time.Time
	// tenure is the lease history every write carries (HeldSince,
	// LastTakeover, Takeovers); holding is set from a successful claim
	// until the lease is lost, released or a standby begins.
	tenure  tenure
	holding bool
	// valid is what Metrics.Lease was last told.
	valid bool
	// quiet is how long standBy saw the checkpoint unchanged before it
	// decided to take it over (0: it did not decide by expiry).
	quiet time.Duration
}

// heldError means another tailer holds the checkpoint: Run stands by.
type heldError struct {
	holder string
	rev    uint64
}

func (e *heldError) Error() string {
	return fmt.Sprintf("checkpoint held by %s (revision %d)", e.holder, e.rev)
}

// acquire loads the checkpoint a session starts from and claims it. It
// returns nil (no checkpoint: the configured start point), a *heldError
// when another tailer holds it, or the store's error (a *checkpoint.MovedError when a
// writer got in between the load and the claim).
func (t *Tailer) acquire(ctx context.Context) (*checkpoint.Checkpoint, error) {
	cp, rev, err := t.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	if cp != nil && rev != t.lease.rev && !claimable(cp, t.cfg.Owner) {
		return nil, &heldError{holder: cp.Holder(), rev: rev}
	}
	if cp == nil && t.lease.cp != nil {
		// Deleted since this tailer wrote it: its own last checkpoint is
		// a safe resume point; the configured start could skip changes.
		t.log.Warn("the checkpoint was deleted since this tailer wrote it: resuming from this tailer's last checkpoint and re-creating it",
			zap.String("key", t.key), zap.String("token", string(t.lease.cp.Token)))
		cp = t.lease.cp
	}
	t.lease.rev = rev
	if cp == nil {
		return nil, nil
	}
	claim := *cp
	claim.Handoff, claim.Released = false, false
	tk := t.claimTenure(cp, &claim)
	if err := t.write(ctx, &claim); err != nil {
		return nil, err
	}
	if t.lease.standing {
		t.lease.standing = false
		t.metrics.Standby(false, "")
	}
	t.claimed(tk)
	if cp.Handoff {
		t.log.Info("resuming from a checkpoint written by a snapshot's hand-off", zap.String("key", t.key),
			zap.String("by", cp.Owner), zap.Uint64("revision", rev), zap.String("token", string(cp.Token)))
	}
	return cp, nil
}

// write stores cp as this tailer's, checked against the lease, and renews
// the lease. A checkpoint deleted under it is re-created at cp; a revision
// moved by this tailer's own earlier write (a lost reply) is adopted. Any
// other move is returned as a *checkpoint.MovedError.
func (t *Tailer) write(ctx context.Context, cp *checkpoint.Checkpoint) error {
	// The lease a successful write grants runs from before it is sent.
	start := t.clock.Now()
	cp.Owner = t.cfg.Owner
	cp.UpdatedAt = start.UTC()
	if cp.HeldSince == nil {
		t.lease.tenure.apply(cp)
	}
	rev, err := t.store.Save(ctx, cp, t.lease.rev)
	var moved *checkpoint.MovedError
	if errors.As(err, &moved) {
		switch {
		case moved.Current == nil && t.lease.rev != 0:
			t.log.Warn("the checkpoint was deleted while this tailer held it: re-creating it at this tailer's position",
				zap.String("key", t.key), zap.String("token", string(cp.Token)))
			rev, err = t.store.Save(ctx, cp, 0)
		case moved.Current != nil && moved.Current.Owner == t.cfg.Owner:
			rev, err = t.store.Save(ctx, cp, moved.Revision)
		}
	}
	if err != nil {
		if errors.Is(err, checkpoint.ErrMoved) {
			t.lost()
		}
		return err
	}
	t.lease.rev, t.lease.cp, t.lease.at = rev, cp, t.clock.Now()
	t.lease.tenure = tenureOf(cp)
	t.renewed(start, cp.Released)
	return nil
}

// fenced reports whether err is the fence's answer. When it is, held is
// the checkpoint's holder to stand by for, or nil to restart at once (a
// snapshot's hand-off, a release or a deletion: the next session claims
// it).
func (t *Tailer) fenced(err error) (held *heldError, ok bool) {
	if errors.As(err, &held) {
		return held, true
	}
	var m *checkpoint.MovedError
	if !errors.As(err, &m) {
		return nil, false
	}
	switch {
	case m.Current == nil:
		t.log.Warn("the checkpoint was deleted under this tailer: restarting", zap.String("key", m.Key))
		return nil, true
	case m.Current.Handoff:
		t.log.Info("the checkpoint was rewritten by a snapshot's hand-off: restarting from it", zap.String("key", m.Key),
			zap.String("by", m.Current.Owner), zap.Uint64("revision", m.Revision), zap.String("token", string(m.Current.Token)))
		return nil, true
	case m.Current.Released:
		return nil, true
	}
	t.log.Warn("the checkpoint was moved by another tailer: this one stops publishing", zap.String("key", m.Key),
		zap.String("holder", m.Holder()), zap.Uint64("revision", m.Revision), zap.Uint64("expected", m.Expected), zap.String("self", t.cfg.Owner))
	return &heldError{holder: m.Holder(), rev: m.Revision}, true
}

// standBy waits while another tailer holds the checkpoint. It reads it
// every checkpoint interval and returns nil, with the lease set to the
// revision to claim, once it has stayed unchanged for StandbyTakeover or
// was released, handed off by a snapshot or deleted; it returns ctx's
// error when ctx ends. Time in which the checkpoint could not be read does
// not count as unchanged.
func (t *Tailer) standBy(ctx context.Context, h *heldError) error {
	t.lost()
	t.lease.holding, t.lease.tenure = false, tenure{}
	t.lease.standing = true
	t.metrics.Standby(true, h.holder)
	t.log.Warn(fmt.Sprintf("standing by: checkpoint %s is written by %s (revision %d)", t.key, h.holder, h.rev),
		zap.String("key", t.key), zap.String("holder", h.holder), zap.Uint64("revision", h.rev),
		zap.String("self", t.cfg.Owner), zap.Duration("takeover_after", t.cfg.StandbyTakeover))
	rev, holder, quiet := h.rev, h.holder, t.clock.Now()
	unreadable := false
	for {
		t.metrics.Alive() // a healthy standby makes the progress it can
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.clock.After(t.cfg.CheckpointInterval):
		}
		cp, r, err := t.store.Load(ctx)
		now := t.clock.Now()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !unreadable {
				t.log.Warn("standing by: the checkpoint is unreadable; not taking over while it is", zap.String("key", t.key), zap.Error(err))
			}
			unreadable, quiet = true, now
			continue
		}
		unreadable = false
		switch {
		case cp == nil || cp.Handoff || cp.Released:
			why := "it was deleted"
			if cp != nil && cp.Handoff {
				why = "a snapshot's hand-off wrote it"
			} else if cp != nil {
				why = "its holder " + cp.Holder() + " released it"
			}
			t.log.Info("taking over the checkpoint: "+why, zap.String("key", t.key), zap.Uint64("revision", r), zap.String("self", t.cfg.Owner))
			t.lease.rev, t.lease.quiet = r, 0
			return nil
		case r != rev:
			if name := cp.Holder(); name != holder {
				holder = name
				t.metrics.Standby(true, holder)
				t.log.Warn(fmt.Sprintf("standing by: checkpoint %s is written by %s (revision %d)", t.key, holder, r),
					zap.String("key", t.key), zap.String("holder", holder), zap.Uint64("revision", r), zap.String("self", t.cfg.Owner))
			}
			rev, quiet = r, now
		case now.Sub(quiet) >= t.cfg.StandbyTakeover:
			t.log.Warn(fmt.Sprintf("taking over: checkpoint %s has not changed for %s since revision %d by %s", t.key, now.Sub(quiet).Round(time.Millisecond), r, holder),
				zap.String("key", t.key), zap.String("holder", holder), zap.Uint64("revision", r), zap.String("self", t.cfg.Owner))
			t.lease.rev, t.lease.quiet = r, now.Sub(quiet)
			return nil
		}
	}
}

// pause waits d before a retry and meanwhile rewrites this tailer's last
// checkpoint every checkpoint interval (it still holds it, it is only
// retrying). It returns nil after d, ctx's error when ctx ends, or the
// *checkpoint.MovedError of a heartbeat that found the checkpoint moved. A heartbeat
// that fails otherwise (NATS unreachable) is left to the retry.
func (t *Tailer) pause(ctx context.Context, d time.Duration) error {
	end := t.clock.Now().Add(d)
	for {
		left := end.Sub(t.clock.Now())
		if left <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.clock.After(min(left, t.cfg.CheckpointInterval)):
		}
		if t.lease.cp == nil || t.clock.Now().Sub(t.lease.at) < t.cfg.CheckpointInterval {
			continue
		}
		hb := *t.lease.cp
		if err := t.write(ctx, &hb); errors.Is(err, checkpoint.ErrMoved) {
			return err
		}
	}
}
