package sink

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/transform"
)

// Raw is one stream message for ApplyRaw.
type Raw struct {
	Seq uint64
	// Data is the envelope (bus.EventBytes of the message).
	Data []byte
	// Err, when set, is why a large event's envelope could not be read
	// (bus.IsLargePoison): Data is then the pointer's body and the event
	// is dead-lettered with Err.
	Err error
}

// ApplyRaw decodes and applies msgs (stream order) in one transaction with
// the same guarantees as the live sink: version guard, transactions whole
// (a transaction whose events are not all in msgs is not applied and is
// reported in Result.Incomplete), poison dead-lettered. Replays use it
// with an Applier created with consumer "".
func (a *Applier) ApplyRaw(ctx context.Context, set *transform.Set, msgs []Raw) (Result, error) {
	return a.ApplyRawWith(ctx, set, msgs, nil)
}

// ApplyRawWith is ApplyRaw with before run first inside the transaction
// (a replay forgets what it repairs there, so the forget and the repair
// commit together).
func (a *Applier) ApplyRawWith(ctx context.Context, set *transform.Set, msgs []Raw, before func(pgx.Tx) error) (Result, error) {
	return a.applyPrepared(ctx, Prepare(set, msgs), applyOpts{before: before})
}

// RetryOptions tune an ApplyRetry.
type RetryOptions struct {
	// Retrying lists the event ids being retried: their own open dead
	// letters do not park them (an earlier one of them still parks a
	// later one of the same document, in source-position order).
	Retrying []string
	// After runs inside the apply transaction, after the units were
	// applied and dead letters recorded, before commit; res is final.
	After func(ctx context.Context, tx pgx.Tx, res *Result) error
}

// ApplyRetry is ApplyRaw for a dead-letter retry: Result.Outcomes tells
// each retried event's fate, and opt.After commits the caller's marks with
// it.
func (a *Applier) ApplyRetry(ctx context.Context, set *transform.Set, msgs []Raw, opt RetryOptions) (Result, error) {
	return a.applyPrepared(ctx, Prepare(set, msgs), applyOpts{retrying: opt.Retrying, after: opt.After})
}

// Prepared is a batch decoded and transformed, ready for ApplyPrepared.
// Preparing (CPU in this process) and applying (mostly Postgres) can
// overlap: prepare batch n+1 while batch n applies.
type Prepared struct {
	units []*unit
	// incomplete are the events of transactions not whole in the batch.
	incomplete []*item
}

// Prepare decodes msgs (stream order), transforms them and groups the
// events of each Mongo transaction.
func Prepare(set *transform.Set, msgs []Raw) *Prepared {
	asm := newAssembler()
	for _, m := range msgs {
		if m.Err != nil {
			asm.add(decodeUnresolved(set, m.Seq, m.Data, m.Err))
			continue
		}
		asm.add(decode(set, m.Seq, m.Data))
	}
	p := &Prepared{units: asm.take()}
	for _, ot := range asm.open {
		for _, it := range ot.items {
			p.incomplete = append(p.incomplete, it)
		}
	}
	return p
}

// ApplyPrepared applies a prepared batch like ApplyRaw.
func (a *Applier) ApplyPrepared(ctx context.Context, p *Prepared) (Result, error) {
	return a.applyPrepared(ctx, p, applyOpts{})
}

func (a *Applier) applyPrepared(ctx context.Context, p *Prepared, opt applyOpts) (Result, error) {
	after := opt.after
	opt.after = func(ctx context.Context, tx pgx.Tx, res *Result) error {
		res.Incomplete += len(p.incomplete)
		for _, it := range p.incomplete {
			res.count(it, OutcomeIncomplete)
		}
		if after != nil {
			return after(ctx, tx, res)
		}
		return nil
	}
	return a.apply(ctx, Batch{units: p.units, WaitRoom: -1}, opt)
}
