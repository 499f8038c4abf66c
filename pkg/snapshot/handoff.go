package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/oplog"
)

// putHandoff writes the tailer's checkpoint so that it resumes at start:
// created if rev is 0, else replacing exactly revision rev; when the stored
// one is not at rev (one appeared, or it moved) it fails with
// checkpoint.ErrMoved, and the hand-off looks again. It is marked as a
// hand-off (Handoff, Owner checkpoint.HandoffOwner()): a running tailer
// restarts from it instead of standing by. prev, the checkpoint it
// replaces (nil: none), passes on its lease history (HeldSince,
// LastTakeover, Takeovers), so `cdc status` keeps it.
func (r *Runner) putHandoff(ctx context.Context, tok bson.Raw, start event.ClusterTime, rev uint64, prev *checkpoint.Checkpoint) error {
	js, err := bson.MarshalExtJSON(tok, true, false)
	if err != nil {
		return fmt.Errorf("encode resume token: %w", err)
	}
	cp := &checkpoint.Checkpoint{Token: json.RawMessage(js), ClusterTime: start, UpdatedAt: time.Now().UTC(),
		Owner: checkpoint.HandoffOwner(), Handoff: true}
	if prev != nil {
		cp.HeldSince, cp.LastTakeover, cp.Takeovers = prev.HeldSince, prev.LastTakeover, prev.Takeovers
	}
	_, err = r.cps.Save(ctx, cp, rev)
	return err
}

// handoffPlan is what the hand-off did (or, in a dry run, would do).
type handoffPlan struct {
	T    event.ClusterTime
	Desc string
}

// handoff records the snapshot's start time T and makes sure streaming
// covers every change from T on. See the package documentation for the
// cases.
func (r *Runner) handoff(ctx context.Context, sess *mongo.Session, first string) (handoffPlan, error) {
	for attempt := 0; attempt < 5; attempt++ {
		// The checkpoint is read BEFORE T: whatever it says, it was
		// written by a tailer that had published everything up to it,
		// so it is at or before T.
		cp, rev, err := r.cps.Load(ctx)
		if err != nil {
			return handoffPlan{}, err
		}
		t, err := oplog.MajorityTime(ctx, r.client, sess, r.cfg.Database, first)
		if err != nil {
			return handoffPlan{}, err
		}
		oldest, err := oplog.Oldest(ctx, r.client)
		if err != nil {
			return handoffPlan{}, err
		}
		plan := handoffPlan{T: t}
		switch {
		case cp == nil:
			start := t
			if st := r.cfg.TailerStart; !st.Now {
				if at := (event.ClusterTime{T: st.T, I: st.I}); at.Compare(t) < 0 && at.Compare(oldest) >= 0 {
					start = at // keep the configured earlier start: nothing before T is skipped
				}
			}
			plan.Desc = fmt.Sprintf("the tailer had no checkpoint: created one that starts streaming at %s (%s), so every change from the snapshot's start on is streamed", start, start.Time().Format(time.RFC3339))
			if r.cfg.DryRun {
				plan.Desc = "would create a tailer checkpoint at the snapshot's start time (the tailer has none)"
				return plan, nil
			}
			tok, err := oplog.StartToken(ctx, r.client, r.cfg.Database, start)
			if err != nil {
				return handoffPlan{}, err
			}
			if err := r.putHandoff(ctx, tok, start, 0, nil); errors.Is(err, checkpoint.ErrMoved) {
				continue // a tailer started meanwhile: look again
			} else if err != nil {
				return handoffPlan{}, fmt.Errorf("create the tailer checkpoint: %w", err)
			}
			return plan, nil
		case cp.EffectiveTime().Compare(oldest) < 0:
			cpt := cp.EffectiveTime()
			if missing := notCovered(r.cfg.Collections, r.cfg.Replicated); len(missing) > 0 {
				return handoffPlan{}, fmt.Errorf("%w: the tailer's checkpoint (%s) has fallen off the oplog (oldest entry %s): "+
					"changes after it are lost for every replicated collection, but this snapshot covers only %v; "+
					"snapshot all of them (omit --collections, or add %v)", ErrHandoff, cpt, oldest, r.cfg.Collections, missing)
			}
			plan.Desc = fmt.Sprintf("the tailer's checkpoint %s had fallen off the oplog (oldest entry %s): reset it to the snapshot's start %s", cpt, oldest, t)
			if r.cfg.DryRun {
				plan.Desc = fmt.Sprintf("would reset the tailer's checkpoint %s, which has fallen off the oplog (oldest entry %s), to the snapshot's start time", cpt, oldest)
				return plan, nil
			}
			tok, err := oplog.StartToken(ctx, r.client, r.cfg.Database, t)
			if err != nil {
				return handoffPlan{}, err
			}
			if err := r.putHandoff(ctx, tok, t, rev, cp); errors.Is(err, checkpoint.ErrMoved) {
				continue
			} else if err != nil {
				return handoffPlan{}, fmt.Errorf("reset the tailer checkpoint: %w", err)
			}
			return plan, nil
		default:
			cpt := cp.EffectiveTime()
			if cpt.Compare(t) > 0 {
				continue // cannot happen with a sane clock; read both again
			}
			plan.Desc = fmt.Sprintf("the tailer's checkpoint %s is at or before the snapshot's start %s: streaming already covers every change from it", cpt, t)
			return plan, nil
		}
	}
	return handoffPlan{}, fmt.Errorf("%w: the tailer checkpoint kept changing during the hand-off; try again", ErrHandoff)
}

// verifyHandoff re-checks, when a snapshot resumes, that streaming still
// covers its start time T.
func (r *Runner) verifyHandoff(ctx context.Context, p *Progress) (string, error) {
	cp, rev, err := r.cps.Load(ctx)
	if err != nil {
		return "", err
	}
	oldest, err := oplog.Oldest(ctx, r.client)
	if err != nil {
		return "", err
	}
	t := p.ClusterTime
	restart := "start a new snapshot with --restart (it records a new start time)"
	switch {
	case cp != nil && cp.EffectiveTime().Compare(oldest) >= 0:
		// The tailer resumes from a point it reached by streaming
		// continuously from at or before T (the hand-off ensured that),
		// so a checkpoint after T is progress, not a gap.
		return fmt.Sprintf("resuming: the tailer checkpoint is at %s", cp.EffectiveTime()), nil
	case t.Compare(oldest) < 0:
		return "", fmt.Errorf("%w: the snapshot's start time %s has fallen off the oplog (oldest entry %s) and the tailer has no usable checkpoint; %s",
			ErrHandoff, t, oldest, restart)
	case cp == nil:
		if r.cfg.DryRun {
			return "would re-create the tailer checkpoint at the snapshot's start time (it was deleted)", nil
		}
		tok, err := oplog.StartToken(ctx, r.client, r.cfg.Database, t)
		if err != nil {
			return "", err
		}
		if err := r.putHandoff(ctx, tok, t, 0, nil); err != nil {
			return "", fmt.Errorf("%w: re-create the tailer checkpoint at %s: %v; %s", ErrHandoff, t, err, restart)
		}
		return fmt.Sprintf("the tailer checkpoint had been deleted: re-created it at the snapshot's start %s", t), nil
	default: // checkpoint fell off the oplog, T did not
		if missing := notCovered(p.Names(), r.cfg.Replicated); len(missing) > 0 {
			return "", fmt.Errorf("%w: the tailer's checkpoint has fallen off the oplog and this snapshot does not cover %v; %s, for every replicated collection",
				ErrHandoff, missing, restart)
		}
		if r.cfg.DryRun {
			return "would reset the tailer checkpoint, which has fallen off the oplog, to the snapshot's start time", nil
		}
		tok, err := oplog.StartToken(ctx, r.client, r.cfg.Database, t)
		if err != nil {
			return "", err
		}
		if err := r.putHandoff(ctx, tok, t, rev, cp); err != nil {
			return "", fmt.Errorf("%w: reset the tailer checkpoint to %s: %v", ErrHandoff, t, err)
		}
		return fmt.Sprintf("the tailer checkpoint had fallen off the oplog: reset it to the snapshot's start %s", t), nil
	}
}

// notCovered lists the replicated collections the snapshot leaves out.
func notCovered(snap, replicated []string) []string {
	var out []string
	for _, c := range replicated {
		if !slices.Contains(snap, c) {
			out = append(out, c)
		}
	}
	return out
}

// waitTailer blocks until the tailer's checkpoint is at or after at, or
// the wait runs out.
func (r *Runner) waitTailer(ctx context.Context, coll string, at event.ClusterTime) error {
	start := time.Now()
	for {
		cp, _, err := r.cps.Load(ctx)
		if err != nil {
			return err
		}
		if cp != nil && cp.EffectiveTime().Compare(at) >= 0 {
			return nil
		}
		if time.Since(start) > r.cfg.TailerWait {
			e := &TailerBehindError{Collection: coll, ReadTime: at, Waited: r.cfg.TailerWait.String()}
			if cp != nil {
				e.HasCP, e.Checkpoint = true, cp.EffectiveTime()
			}
			return e
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
