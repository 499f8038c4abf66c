package sink

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/state"
)

// setAside writes this batch's waiting units and spilled transaction
// parts to cdc.deferred_events and removes the deferred events it
// resolved, in tx.
func (a *Applier) setAside(ctx context.Context, tx pgx.Tx, res *Result, good, bad []*unit, spill []*item) error {
	if a.consumer == "" {
		// Replays and retries have no deferred store: what waits is
		// reported; the stream or the dead letter keeps it.
		for _, u := range res.waiting {
			res.Waiting += len(u.items)
			for _, it := range u.items {
				res.count(it, OutcomeWaiting)
			}
		}
		return nil
	}
	now := a.now()
	var ds []state.Deferred
	for _, u := range res.waiting {
		res.Waiting += len(u.items)
		for _, it := range u.items {
			res.count(it, OutcomeWaiting)
			if !it.deferred {
				res.NewWaiting++
				res.NewWaitingBytes += int64(len(it.raw))
			}
			ds = append(ds, deferredRow(it, state.DeferWait, "waiting for a parent (policy wait)", u.firstSeen,
				now.Add(waitBackoff(it.attempts))))
		}
	}
	for _, it := range spill {
		if it.noop {
			continue
		}
		res.Spilled++
		ds = append(ds, deferredRow(it, state.DeferTxn, "part of an open Mongo transaction", now, now))
	}
	if err := state.Defer(ctx, tx, a.consumer, ds); err != nil {
		return err
	}
	var done []uint64
	resolved := func(units []*unit) {
		for _, u := range units {
			for _, it := range u.items {
				if !it.deferred {
					continue
				}
				done = append(done, it.seq)
				if it.ev.Source.Txn != nil && u.spilled {
					res.TxnResolved++
				} else {
					res.WaitResolved++
					res.WaitResolvedBytes += int64(len(it.raw))
				}
			}
		}
	}
	resolved(good)
	resolved(bad)
	return state.Undefer(ctx, tx, a.consumer, done)
}

func deferredRow(it *item, kind state.DeferKind, reason string, firstSeen, next time.Time) state.Deferred {
	d := state.Deferred{Seq: it.seq, Kind: kind, EventID: it.ev.ID, Collection: it.ev.Source.Coll, DocKey: it.docKey,
		Reason: reason, Event: it.raw, Attempts: it.attempts, FirstSeen: firstSeen, NextTry: next}
	if t := it.ev.Source.Txn; t != nil {
		d.TxnID, d.TxnIndex, d.TxnLast = t.ID(), t.Index, t.Last
	}
	return d
}

// waitBackoff spaces the tries of a waiting event: 1 s, doubling, at most
// 30 s.
func waitBackoff(attempts int) time.Duration {
	return min(time.Second<<min(attempts, 5), 30*time.Second)
}
