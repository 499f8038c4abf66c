package verify

import (
	"context"
	"fmt"
	"math/rand/v2"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
)

// collRun verifies one collection.
type collRun struct {
	v     *Verifier
	plan  *mappingPlan
	coll  string
	sums  *sums
	count *Check
	toPG  *Check
	toMgo *Check
	diff  *Check
	money *Check
	// continuous: a round of the continuous verifier (continuous.go): no
	// sums, and a document still unsettled at the deadline, or explained
	// by an open dead letter, is set aside (counted in unsettled and
	// explained), not reported.
	continuous           bool
	unsettled, explained int64
	// onFinal, when set, hears of every document as soon as it is found
	// different for good (the continuous verifier schedules its re-check
	// then, not when the whole chunk has settled).
	onFinal func(d *docState, probs []problem)
}

func (v *Verifier) newCollRun(plan *mappingPlan) *collRun {
	coll := plan.m.Collection
	n := v.cfg.Examples
	return &collRun{v: v, plan: plan, coll: coll, sums: newSums(),
		count: newCheck(checkCount, coll, n), toPG: newCheck(checkIDMapToPG, coll, n), toMgo: newCheck(checkIDMapToMongo, coll, n),
		diff: newCheck(checkDiff, coll, n), money: newCheck(checkSums, coll, n)}
}

func (r *collRun) checks() []*Check {
	return []*Check{r.count, r.toPG, r.toMgo, r.diff, r.money}
}

// run runs the collection's checks; an error aborts the collection (and
// is recorded on every check that did not finish).
func (r *collRun) run(ctx context.Context) error {
	total, err := r.countCheck(ctx)
	if err != nil {
		r.count.fail(err)
		return r.abort(err, r.toPG, r.toMgo, r.diff, r.money)
	}
	if err := r.forward(ctx, total); err != nil {
		return r.abort(err, r.toPG, r.diff, r.money, r.toMgo)
	}
	if err := r.reverse(ctx); err != nil {
		return r.abort(err, r.toMgo, r.money)
	}
	r.sums.report(r.money)
	if r.v.cfg.Sample > 0 {
		r.money.note("sums cover the sampled documents and any row without a live document")
		r.diff.note("sample of about %d documents (strided, random offset)", r.v.cfg.Sample)
	}
	return nil
}

func (r *collRun) abort(err error, checks ...*Check) error {
	for _, c := range checks {
		if c.Status != StatusError {
			c.fail(fmt.Errorf("not completed: %w", err))
		}
	}
	return err
}

// forward reads the collection in _id order, chunk by chunk, and settles
// every document against Postgres.
func (r *collRun) forward(ctx context.Context, total int64) error {
	v := r.v
	smp := newSampler(v.cfg.Sample, total)
	v.progress.Begin(r.coll, total, 0)
	defer v.progress.End(r.coll)
	// The scan covers the documents up to the greatest _id at its start:
	// documents inserted later with greater ids are not chased (under a
	// steady insert load the scan would never end).
	bound, found, err := v.mongo.lastID(ctx, r.coll)
	if err != nil || !found {
		return err
	}
	var last bson.RawValue
	hasLast, done := false, false
	for !done {
		docs, lo, hi, err := v.mongo.nextChunk(ctx, r.coll, last, hasLast, v.cfg.ChunkSize, smp.n > 0)
		if err != nil {
			return err
		}
		if len(docs) == 0 {
			break
		}
		docs, done = cutAtBound(docs, bound)
		if len(docs) == 0 {
			break
		}
		last, hasLast = docs[len(docs)-1].Lookup("_id"), true
		states, err := r.chunkStates(ctx, docs, lo, hi, smp)
		if err != nil {
			return err
		}
		r.toPG.Counts["documents"] += int64(len(states))
		if err := r.settle(ctx, states); err != nil {
			return err
		}
		v.progress.Advance(r.coll, int64(len(docs)))
	}
	return nil
}

// sampler picks every (total/n)-th document, the fractional stride spread
// evenly (an accumulator, as in Bresenham's line), from a random offset,
// and no more than n of them. n 0: no sample, every document's data is
// compared.
type sampler struct {
	n          int
	total, acc int64
	sampled    int64
}

func newSampler(n int, total int64) *sampler {
	s := &sampler{n: n, total: total}
	if n > 0 && total > 0 {
		s.acc = rand.Int64N(total)
	}
	return s
}

// step advances the stride by one document and says whether it lands on
// this one.
func (s *sampler) step() bool {
	if s.total <= int64(s.n) {
		return true
	}
	s.acc += int64(s.n)
	if s.acc >= s.total {
		s.acc -= s.total
		return true
	}
	return false
}

// pick says whether to compare the next document's data; the stride moves
// on every document, even once n are sampled.
func (s *sampler) pick() bool {
	if s.n > 0 && s.step() && s.sampled < int64(s.n) {
		s.sampled++
		return true
	}
	return false
}

// cutAtBound drops the documents past bound, the greatest _id when the
// scan began; done says the scan has reached it.
func cutAtBound(docs []bson.Raw, bound bson.RawValue) (_ []bson.Raw, done bool) {
	for i, raw := range docs {
		if c, ok := compareIDs(raw.Lookup("_id"), bound); ok && c > 0 {
			return docs[:i], true
		}
	}
	return docs, false
}

// chunkStates makes the chunk's documents ready to settle. Without a sample
// the chunk holds whole documents; with one it holds _ids only (presence),
// and the picked documents are read whole in a second read.
func (r *collRun) chunkStates(ctx context.Context, docs []bson.Raw, lo, hi event.ClusterTime, smp *sampler) ([]*docState, error) {
	states := make([]*docState, 0, len(docs))
	var pick []any
	picked := map[string]*docState{}
	for _, raw := range docs {
		id := raw.Lookup("_id")
		key := event.KeyString(id)
		data := smp.n == 0
		if smp.pick() {
			pick = append(pick, id)
			data = true
		}
		d := &docState{key: key, id: []any{id}, data: data}
		if smp.n == 0 {
			d.set(r.plan, raw, lo, hi)
		} else {
			d.raw, d.lo, d.hi = raw, lo, hi // _id only: presence
			picked[key] = d
		}
		states = append(states, d)
	}
	if len(pick) > 0 {
		if err := r.readPicked(ctx, states, picked, pick); err != nil {
			return nil, err
		}
	}
	return states, nil
}

// readPicked reads the picked documents whole; one deleted since the
// chunk's read is settled as deleted, as of the second read.
func (r *collRun) readPicked(ctx context.Context, states []*docState, picked map[string]*docState, pick []any) error {
	full, plo, phi, err := r.v.mongo.byIDs(ctx, r.coll, pick, false)
	if err != nil {
		return err
	}
	for _, d := range states {
		if d.data {
			d.raw = nil
		}
	}
	for _, raw := range full {
		if d := picked[event.KeyString(raw.Lookup("_id"))]; d != nil && d.data {
			d.set(r.plan, raw, plo, phi)
		}
	}
	for _, d := range states {
		if d.data && d.raw == nil {
			d.set(r.plan, nil, plo, phi) // deleted between the two reads
		}
	}
	return nil
}

// reverse walks the table's rows in key order and settles every row whose
// key has no live Mongo document, then lists rows without an id_map entry.
func (r *collRun) reverse(ctx context.Context) error {
	if err := r.reverseMapped(ctx); err != nil {
		return err
	}
	if !r.plan.uuidID {
		return nil
	}
	return r.reverseUnmapped(ctx)
}

// reverseMapped walks the rows that have a key, page by page.
func (r *collRun) reverseMapped(ctx context.Context) error {
	v := r.v
	n := v.cfg.ChunkSize
	// Up to the greatest key at the start, like the forward scan.
	bound, more, err := v.pg.lastKey(ctx, r.plan)
	if err != nil {
		return err
	}
	after, first := "", true
	for more {
		page, err := v.pg.mappedRows(ctx, r.plan, after, first, n)
		if err != nil {
			return err
		}
		for i, kr := range page {
			if kr.key > bound {
				page, more = page[:i], false
				break
			}
		}
		if len(page) == 0 {
			break
		}
		after, first = page[len(page)-1].key, false
		r.toMgo.Counts["rows"] += int64(len(page))
		if err := r.settleGone(ctx, page); err != nil {
			return err
		}
		if len(page) < n {
			break
		}
	}
	return nil
}

// settleGone settles the page's rows whose key has no live Mongo
// document; the others were settled by the forward scan.
func (r *collRun) settleGone(ctx context.Context, page []keyRow) error {
	var ids []any
	for _, kr := range page {
		ids = append(ids, keyIDs(kr.key)...)
	}
	docs, lo, hi, err := r.v.mongo.byIDs(ctx, r.coll, ids, true)
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, raw := range docs {
		live[event.KeyString(raw.Lookup("_id"))] = true
	}
	var gone []*docState
	for _, kr := range page {
		if !live[kr.key] {
			d := &docState{key: kr.key, data: true}
			d.set(r.plan, nil, lo, hi)
			gone = append(gone, d)
		}
	}
	if len(gone) > 0 {
		if err := r.settle(ctx, gone); err != nil {
			return err
		}
	}
	return nil
}

// reverseUnmapped lists the rows without an id_map entry: no document can
// be traced to them, and their values still count in the sums.
func (r *collRun) reverseUnmapped(ctx context.Context) error {
	v := r.v
	n := v.cfg.ChunkSize
	after, first := "", true
	for {
		page, err := v.pg.unmappedRows(ctx, r.plan, after, first, n)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		after, first = page[len(page)-1].newID, false
		ids := make([]string, len(page))
		for i, kr := range page {
			ids[i] = kr.newID
			r.toMgo.mismatch(Example{PGID: kr.newID, Table: r.plan.top.table,
				Detail: "row has no id_map entry of collection " + r.coll + ", so no Mongo document can be traced to it"})
		}
		r.toMgo.Counts["unmapped_rows"] += int64(len(page))
		sctx, cancel := context.WithTimeout(ctx, v.cfg.QueryTimeout)
		err = r.pgSums(sctx, v.pg.pool, ids)
		cancel()
		if err != nil {
			return err
		}
		if len(page) < n {
			break
		}
	}
	return nil
}
