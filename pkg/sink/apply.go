package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// Applier writes units to Postgres: fence, version guard, id_map, rows,
// dead letters, deferred events and the stream position, all in one
// transaction per batch.
type Applier struct {
	pool     *pgxpool.Pool
	consumer string
	stream   string
	set      *transform.Set
	fill     map[string][]filler
	// childFill: collections that child-table null references wait for.
	childFill map[string]bool
	types     columnTypes
	now       func() time.Time
	// unparked collections apply a dead-lettered document's later events
	// instead of holding them.
	unparked map[string]bool
	// fence is the live sink's hold on its consumer; nil for replays and
	// retries, which record no position.
	fence *state.Fence
}

// NewApplier prepares the SQL of every mapping in set. consumer names the
// position row and deferred events of a live sink; "" writes none
// (replays, retries).
func NewApplier(pool *pgxpool.Pool, set *transform.Set, consumer, stream string) *Applier {
	return &Applier{pool: pool, set: set, consumer: consumer, stream: stream, unparked: map[string]bool{}, now: time.Now, fill: fillers(set), childFill: childFillers(set)}
}

// SetUnparked lists collections whose documents keep applying after one of
// their events is dead-lettered (the default holds them).
func (a *Applier) SetUnparked(collections []string) {
	for _, c := range collections {
		a.unparked[c] = true
	}
}

// Batch is the work of one live apply transaction.
type Batch struct {
	units []*unit
	// Floor is the low-water mark recorded with the batch (0: unchanged).
	Floor uint64
	// spill are parts of open transactions to set aside.
	spill []*item
	// WaitRoom is how many more events may be deferred waiting for a
	// parent; the units past it are dead-lettered. Negative: no bound.
	WaitRoom int
}

// applyOpts are the per-call options of apply.
type applyOpts struct {
	// retrying are the event ids a dead-letter retry re-applies.
	retrying []string
	before   func(pgx.Tx) error
	after    func(context.Context, pgx.Tx, *Result) error
}

// begin starts a batch transaction: the fence is checked first (the row
// stays locked until commit), and foreign keys (DEFERRABLE in the schema)
// are checked at the end, so a parent and its child may arrive in either
// order within one batch.
func (a *Applier) begin(ctx context.Context, opt applyOpts) (pgx.Tx, error) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	if a.fence != nil {
		if _, err := a.fence.Check(ctx, tx); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL DEFERRED"); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("defer constraints: %w", err)
	}
	if opt.before != nil {
		if err := opt.before(tx); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	return tx, nil
}

// checkDeferred surfaces deferred constraint violations now, as a
// statement error, instead of at COMMIT where they could not be told
// apart; constraints are deferred again afterwards.
func checkDeferred(ctx context.Context, tx pgx.Tx) error {
	// One round trip (simple protocol, no arguments).
	if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL IMMEDIATE; SET CONSTRAINTS ALL DEFERRED"); err != nil {
		return fmt.Errorf("deferred constraint: %w", err)
	}
	return nil
}

// Apply commits b in one Postgres transaction. Poison units are
// dead-lettered (a whole Mongo transaction together) and the rest
// commits; units waiting for a parent and spilled transaction parts are
// set aside in cdc.deferred_events; retryable and fatal errors are
// returned with nothing committed.
func (a *Applier) Apply(ctx context.Context, b Batch) (Result, error) {
	return a.apply(ctx, b, applyOpts{})
}

func (a *Applier) apply(ctx context.Context, b Batch, opt applyOpts) (Result, error) {
	res := newResult()
	units := b.units
	tx, err := a.begin(ctx, opt)
	if err != nil {
		return res, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after commit
	held, err := a.heldDocs(ctx, tx, units, opt.retrying)
	if err != nil {
		return res, err
	}
	var good, bad []*unit
	for _, u := range units {
		if u.rejected() != nil {
			bad = append(bad, u)
			holdUnit(held, u)
		}
	}
	for _, u := range units {
		if u.rejected() != nil {
			continue
		}
		if a.park(held, u) {
			bad = append(bad, u)
		} else {
			good = append(good, u)
		}
	}
	rst, err := a.loadRefState(ctx, tx, good)
	if err != nil {
		return res, err
	}
	var rejected []*unit
	var present map[docRef]bool
	good, res.waiting, rejected, present = a.resolveRefs(rst, good)
	res.waiting, rejected = a.boundWaits(res.waiting, rejected, b.WaitRoom)
	for _, u := range rejected {
		bad = append(bad, u)
		holdUnit(held, u)
	}

	r, err := a.applyUnits(ctx, tx, good, present)
	if err == nil {
		err = checkDeferred(ctx, tx)
	}
	if err != nil {
		if Classify(err) != Poison {
			return res, err
		}
		// Isolate the poison: start over, one savepoint per unit.
		if err := tx.Rollback(ctx); err != nil {
			return res, fmt.Errorf("rollback: %w", err)
		}
		if tx, err = a.begin(ctx, opt); err != nil {
			return res, err
		}
		r = newResult()
		for _, u := range good {
			if a.park(held, u) {
				bad = append(bad, u)
				continue
			}
			sp, err := tx.Begin(ctx)
			if err != nil {
				return res, fmt.Errorf("savepoint: %w", err)
			}
			ur, err := a.applyUnits(ctx, sp, []*unit{u}, present)
			if err == nil {
				err = checkDeferred(ctx, sp)
			}
			if err != nil {
				if Classify(err) != Poison {
					return res, err
				}
				if rerr := sp.Rollback(ctx); rerr != nil {
					return res, fmt.Errorf("rollback to savepoint: %w", rerr)
				}
				u.items[0].reject = err
				bad = append(bad, u)
				holdUnit(held, u)
				continue
			}
			if err := sp.Commit(ctx); err != nil {
				return res, fmt.Errorf("release savepoint: %w", err)
			}
			r.merge(ur)
		}
	}
	res.merge(r)
	if err := deadLetters(ctx, tx, a.stream, bad); err != nil {
		return res, err
	}
	for _, u := range bad {
		res.DeadLettered += len(u.items)
		res.dead = append(res.dead, u.items...)
		for _, it := range u.items {
			if _, ok := it.reject.(*parkedError); ok {
				res.count(it, OutcomeParked)
			} else {
				res.count(it, OutcomeDeadLettered)
			}
			var ve *violationError
			if errors.As(it.reject, &ve) {
				res.Violations++
			}
		}
	}
	if err := a.setAside(ctx, tx, &res, good, bad, b.spill); err != nil {
		return res, err
	}
	if a.fence != nil && b.Floor > 0 {
		if err := a.fence.Advance(ctx, tx, b.Floor, res.LastClusterTime); err != nil {
			return res, err
		}
	}
	if opt.after != nil {
		if err := opt.after(ctx, tx, &res); err != nil {
			return res, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	return res, nil
}

// boundWaits dead-letters the waiting units that do not fit in room (new
// waits only: a unit already deferred keeps its place).
func (a *Applier) boundWaits(waiting, rejected []*unit, room int) ([]*unit, []*unit) {
	var kept []*unit
	for _, u := range waiting {
		if room < 0 || u.items[0].deferred {
			kept = append(kept, u)
			continue
		}
		if n := len(u.items); n <= room {
			room -= n
			kept = append(kept, u)
			continue
		}
		it := u.items[0]
		it.reject = &transform.Rejection{Collection: it.ev.Source.Coll, Reason: fmt.Sprintf(
			"the sink already holds the most events waiting for a parent it may (sink.max_waiting); " +
				"the missing parents must be replicated (cdc replay ids) and this entry retried (cdc dlq retry)")}
		rejected = append(rejected, u)
	}
	return kept, rejected
}

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
