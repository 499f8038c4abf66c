package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/transform"
)

// Applier writes batches to Postgres: fence, version guard, id_map, rows,
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
}

// NewApplier prepares the SQL of every mapping in set. consumer names the
// position row and deferred events of a live sink; "" writes none
// (replays, retries). stream is the stream the batches' sequences belong
// to, recorded with their dead letters ("" for a retry, which reads none).
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

// begin starts a batch transaction: the fence is checked first (the row
// stays locked until commit), and foreign keys (DEFERRABLE in the schema)
// are checked at the end, so a parent and its child may arrive in either
// order within one batch. b.Before runs last.
func (a *Applier) begin(ctx context.Context, b Batch) (pgx.Tx, error) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	if b.fence != nil {
		if _, err := b.fence.Check(ctx, tx); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL DEFERRED"); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("defer constraints: %w", err)
	}
	if b.Before != nil {
		if err := b.Before(tx); err != nil {
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
// set aside in cdc.deferred_events (an Applier without a consumer only
// counts them in Result.Waiting); retryable and fatal errors are returned
// with nothing committed.
func (a *Applier) Apply(ctx context.Context, b Batch) (Result, error) {
	res := newResult()
	tx, err := a.begin(ctx, b)
	if err != nil {
		return res, err
	}
	defer func() {
		if tx != nil { // nil when isolation could not begin again
			_ = tx.Rollback(context.WithoutCancel(ctx)) // no-op after commit
		}
	}()
	p, err := a.partition(ctx, tx, b)
	if err != nil {
		return res, err
	}
	res.waiting = p.waiting
	r, err := a.write(ctx, tx, p.good, p.present)
	if err != nil && Classify(err) == fault.Poison {
		tx, r, err = a.isolate(ctx, tx, b, p)
	}
	if err != nil {
		return res, err
	}
	res.merge(r)
	if err := a.record(ctx, tx, b, p, &res); err != nil {
		return res, err
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	return res, nil
}

// split is how one batch's units divide before a row is written.
type split struct {
	// good apply now; bad are dead-lettered (rejected before Postgres,
	// parked behind an open dead letter, refused by a reference policy or
	// the wait bound, or poison when written alone); waiting wait for a
	// parent.
	good, bad, waiting []*unit
	// held is, per document, the earliest position of an open dead letter:
	// the document's later events park behind it.
	held map[docRef]event.Position
	// present are the referenced parents there for this batch
	// (resolveRefs).
	present map[docRef]bool
}

// reject dead-letters u and holds its documents from its positions on.
func (p *split) reject(u *unit) {
	p.bad = append(p.bad, u)
	holdUnit(p.held, u)
}

// partition divides b's units: those rejected before Postgres first (their
// documents are held from then on), then those parked behind a held
// document, then by their references (resolveRefs, boundWaits).
func (a *Applier) partition(ctx context.Context, tx pgx.Tx, b Batch) (*split, error) {
	held, err := a.heldDocs(ctx, tx, b.units, b.Retrying)
	if err != nil {
		return nil, err
	}
	p := &split{held: held}
	for _, u := range b.units {
		if u.rejected() != nil {
			p.reject(u)
		}
	}
	var candidates []*unit
	for _, u := range b.units {
		if u.rejected() != nil {
			continue
		}
		if a.park(held, u) {
			p.bad = append(p.bad, u)
		} else {
			candidates = append(candidates, u)
		}
	}
	rst, err := a.loadRefState(ctx, tx, candidates)
	if err != nil {
		return nil, err
	}
	var rejected []*unit
	p.good, p.waiting, rejected, p.present = a.resolveRefs(rst, candidates)
	p.waiting, rejected = a.boundWaits(p.waiting, rejected, b.waitRoom)
	for _, u := range rejected {
		p.reject(u)
	}
	return p, nil
}

// write applies units in tx and surfaces their deferred constraint
// violations. Any error leaves tx to be rolled back (or rolled back to its
// savepoint) by the caller.
func (a *Applier) write(ctx context.Context, tx pgx.Tx, units []*unit, present map[docRef]bool) (Result, error) {
	r, err := a.applyUnits(ctx, tx, units, present)
	if err == nil {
		err = checkDeferred(ctx, tx)
	}
	return r, err
}

// isolate applies p.good again after writing them together met poison: tx
// is rolled back and a new transaction applies each unit in its own
// savepoint, dead-lettering those that are poison alone (p.bad). It
// returns the transaction to go on with: the new one, the old one when
// rolling it back failed, nil when no new one could begin.
func (a *Applier) isolate(ctx context.Context, tx pgx.Tx, b Batch, p *split) (pgx.Tx, Result, error) {
	r := newResult()
	if err := tx.Rollback(ctx); err != nil {
		return tx, r, fmt.Errorf("rollback: %w", err)
	}
	tx, err := a.begin(ctx, b)
	if err != nil {
		return nil, r, err
	}
	for _, u := range p.good {
		if a.park(p.held, u) {
			p.bad = append(p.bad, u)
			continue
		}
		ur, poison, err := a.writeAlone(ctx, tx, u, p.present)
		if err != nil {
			return tx, r, err
		}
		if poison != nil {
			u.items[0].reject = poison
			p.reject(u)
			continue
		}
		r.merge(ur)
	}
	return tx, r, nil
}

// writeAlone applies u in a savepoint of tx. A poison error comes back as
// poison, with the savepoint rolled back and tx usable; any other error is
// the batch's.
func (a *Applier) writeAlone(ctx context.Context, tx pgx.Tx, u *unit, present map[docRef]bool) (_ Result, poison, _ error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return Result{}, nil, fmt.Errorf("savepoint: %w", err)
	}
	ur, err := a.write(ctx, sp, []*unit{u}, present)
	if err != nil {
		if Classify(err) != fault.Poison {
			return ur, nil, err
		}
		if rerr := sp.Rollback(ctx); rerr != nil {
			return ur, nil, fmt.Errorf("rollback to savepoint: %w", rerr)
		}
		return ur, err, nil
	}
	if err := sp.Commit(ctx); err != nil {
		return ur, nil, fmt.Errorf("release savepoint: %w", err)
	}
	return ur, nil, nil
}

// record writes, in tx, what the batch decided besides its rows: dead
// letters, deferred events, the position (under the fence), the
// incomplete transactions' counts, then runs b.After on the final res.
func (a *Applier) record(ctx context.Context, tx pgx.Tx, b Batch, p *split, res *Result) error {
	if err := deadLetters(ctx, tx, a.stream, p.bad); err != nil {
		return err
	}
	res.countDead(p.bad)
	// p.good still holds the units isolate parked or found poison (they
	// are in p.bad too): setAside counts their deferred items resolved
	// either way.
	if err := a.setAside(ctx, tx, res, p.good, p.bad, b.spill); err != nil {
		return err
	}
	if b.fence != nil && b.floor > 0 {
		if err := b.fence.Advance(ctx, tx, b.floor, res.LastClusterTime); err != nil {
			return err
		}
	}
	res.Incomplete += len(b.incomplete)
	for _, it := range b.incomplete {
		res.count(it, OutcomeIncomplete)
	}
	if b.After != nil {
		return b.After(ctx, tx, res)
	}
	return nil
}

// countDead counts the events of the dead-lettered units by outcome
// (parked or dead-lettered) and keeps them for the DLQ stream.
func (r *Result) countDead(bad []*unit) {
	for _, u := range bad {
		r.DeadLettered += len(u.items)
		r.dead = append(r.dead, u.items...)
		for _, it := range u.items {
			if _, ok := it.reject.(*parkedError); ok {
				r.count(it, OutcomeParked)
			} else {
				r.count(it, OutcomeDeadLettered)
			}
			var ve *violationError
			if errors.As(it.reject, &ve) {
				r.Violations++
			}
		}
	}
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
