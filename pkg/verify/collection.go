package verify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
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
	// A sample picks every (total/sample)-th document, the fractional
	// stride spread evenly (an accumulator, as in Bresenham's line), from a
	// random offset.
	sample := v.cfg.Sample
	var acc int64
	if sample > 0 && total > 0 {
		acc = rand.Int64N(total)
	}
	pickNext := func() bool {
		if total <= int64(sample) {
			return true
		}
		acc += int64(sample)
		if acc >= total {
			acc -= total
			return true
		}
		return false
	}
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
	var sampled int64
	for !done {
		docs, lo, hi, err := v.mongo.nextChunk(ctx, r.coll, last, hasLast, v.cfg.ChunkSize, sample > 0)
		if err != nil {
			return err
		}
		if len(docs) == 0 {
			break
		}
		for i, raw := range docs {
			if c, ok := compareIDs(raw.Lookup("_id"), bound); ok && c > 0 {
				docs, done = docs[:i], true
				break
			}
		}
		if len(docs) == 0 {
			break
		}
		last, hasLast = docs[len(docs)-1].Lookup("_id"), true
		states := make([]*docState, 0, len(docs))
		var pick []any
		picked := map[string]*docState{}
		for _, raw := range docs {
			id := raw.Lookup("_id")
			key := event.KeyString(id)
			data := sample == 0
			if sample > 0 && pickNext() && sampled < int64(sample) {
				sampled++
				pick = append(pick, id)
				data = true
			}
			d := &docState{key: key, id: []any{id}, data: data}
			if sample == 0 {
				d.set(r.plan, raw, lo, hi)
			} else {
				d.raw, d.lo, d.hi = raw, lo, hi // _id only: presence
				picked[key] = d
			}
			states = append(states, d)
		}
		if len(pick) > 0 {
			full, plo, phi, err := v.mongo.byIDs(ctx, r.coll, pick, false)
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
		}
		r.toPG.Counts["documents"] += int64(len(states))
		if err := r.settle(ctx, states); err != nil {
			return err
		}
		v.progress.Advance(r.coll, int64(len(docs)))
	}
	return nil
}

// reverse walks the table's rows in key order and settles every row whose
// key has no live Mongo document, then lists rows without an id_map entry.
func (r *collRun) reverse(ctx context.Context) error {
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
		var ids []any
		for _, kr := range page {
			ids = append(ids, keyIDs(kr.key)...)
		}
		docs, lo, hi, err := v.mongo.byIDs(ctx, r.coll, ids, true)
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
		if len(page) < n {
			break
		}
	}
	if !r.plan.uuidID {
		return nil
	}
	after, first = "", true
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

// settle compares documents with their rows until each is equal, or
// differs in a way that persists once the sink has caught up with the
// read, or RecheckWait has passed; then records the outcome and the sums.
func (r *collRun) settle(ctx context.Context, pending []*docState) error {
	v := r.v
	var deadline time.Time
	start, n, rounds := time.Now(), len(pending), 0
	defer func() {
		v.log.Debug("settled", zap.String("collection", r.coll), zap.Int("documents", n), zap.Int("rounds", rounds), zap.Duration("took", time.Since(start)))
	}()
	for round := 0; len(pending) > 0; round++ {
		rounds++
		if round > 0 {
			hi := pending[0].hi
			for _, d := range pending {
				if d.hi.Compare(hi) > 0 {
					hi = d.hi
				}
			}
			if _, err := v.waitPassed(ctx, hi, deadline); err != nil {
				return err
			}
		}
		next, reread, err := r.round(ctx, pending, &deadline)
		if err != nil {
			return err
		}
		if round == 0 {
			r.diff.Counts["rechecked"] += int64(len(next) + len(reread))
		}
		if len(reread) > 0 {
			if err := r.reread(ctx, reread); err != nil {
				return err
			}
		}
		pending = append(next, reread...)
		if r.continuous {
			// A document that changed while it was compared is in flight:
			// the next pass compares it (waiting for it would stall the
			// walk on every busy document).
			kept := pending[:0]
			for _, d := range pending {
				if d.changed {
					r.unsettled++
					continue
				}
				kept = append(kept, d)
			}
			pending = kept
		}
	}
	return nil
}

// reread reads the documents from Mongo again.
func (r *collRun) reread(ctx context.Context, docs []*docState) error {
	var ids []any
	for _, d := range docs {
		ids = append(ids, d.id...)
	}
	raws, lo, hi, err := r.v.mongo.byIDs(ctx, r.coll, ids, false)
	if err != nil {
		return err
	}
	byKey := map[string]bson.Raw{}
	for _, raw := range raws {
		byKey[event.KeyString(raw.Lookup("_id"))] = raw
	}
	for _, d := range docs {
		raw := byKey[d.key]
		d.changed = d.changed || !bytesEqual(d.raw, raw)
		d.set(r.plan, raw, lo, hi)
	}
	return nil
}

// round compares the pending documents with one Postgres snapshot. It
// records the documents that are settled and returns those that wait for
// the sink (next) and those to read again from Mongo (reread).
func (r *collRun) round(ctx context.Context, pending []*docState, deadline *time.Time) (next, reread []*docState, err error) {
	v := r.v
	qctx, cancel := context.WithTimeout(ctx, v.cfg.QueryTimeout)
	defer cancel()
	tx, err := v.pg.snapshot(qctx)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	pos, err := v.pg.appliedPosition(qctx, tx)
	if err != nil {
		return nil, nil, err
	}
	keys := make([]string, len(pending))
	withData := false
	for i, d := range pending {
		keys[i] = d.key
		withData = withData || d.data
	}
	rows, err := v.pg.fetchRows(qctx, tx, r.plan, keys, withData)
	if err != nil {
		return nil, nil, err
	}
	info, err := r.roundInfo(qctx, tx, pending, rows)
	if err != nil {
		return nil, nil, err
	}
	type verdict struct {
		d     *docState
		probs []problem
	}
	var mismatched []verdict
	var done []*docState
	for _, d := range pending {
		probs := r.compare(d, rows[d.key], info)
		if len(probs) == 0 {
			done = append(done, d)
			continue
		}
		mismatched = append(mismatched, verdict{d, probs})
	}
	var final []verdict
	if len(mismatched) > 0 {
		now := time.Now()
		if deadline.IsZero() {
			*deadline = now.Add(v.cfg.RecheckWait)
		}
		mkeys := make([]string, len(mismatched))
		for i, m := range mismatched {
			mkeys[i] = m.d.key
		}
		dead, err := v.pg.openDeadLetters(qctx, tx, r.coll, mkeys)
		if err != nil {
			return nil, nil, err
		}
		passed := map[event.ClusterTime]bool{}
		for _, m := range mismatched {
			d, row := m.d, rows[m.d.key]
			var ver int64
			if row != nil {
				ver = row.version
			}
			if ver > d.lo.Pack() {
				// Postgres applied a change made after (or while) Mongo
				// was read: read Mongo again.
				reread = append(reread, d)
			} else {
				ok, seen := passed[d.hi]
				if !seen {
					if ok, err = v.passed(ctx, pos, d.hi, true); err != nil {
						return nil, nil, err
					}
					passed[d.hi] = ok
				}
				reason, deadLettered := dead[d.key]
				switch {
				case !ok:
					next = append(next, d)
				case deadLettered && r.continuous:
					// Explained, and alerted on as a dead letter already.
					r.explained++
					done = append(done, d)
					continue
				case deadLettered:
					// The sink caught up and holds the document behind an
					// open dead letter: that explains the difference.
					for i := range m.probs {
						m.probs[i].ex.Detail += " (the document has an open dead letter: " + clip(reason) + ")"
					}
					final = append(final, m)
					continue
				case d.candidate == fingerprint(d, row, m.probs):
					final = append(final, m) // seen twice: it persists
					continue
				default:
					d.candidate = fingerprint(d, row, m.probs)
					reread = append(reread, d)
				}
			}
			if now.After(*deadline) && r.continuous {
				r.unsettled++
				next, reread = dropDoc(next, d), dropDoc(reread, d)
				continue
			}
			if now.After(*deadline) {
				for i := range m.probs {
					m.probs[i].ex.Detail += fmt.Sprintf(" (not settled within --recheck-wait %s: the sink's position %s had not passed the read at %s, or the document kept changing)",
						v.cfg.RecheckWait, event.Unpack(pos), d.hi)
				}
				final = append(final, m)
				next, reread = dropDoc(next, d), dropDoc(reread, d)
			}
		}
	}
	for _, m := range final {
		for _, p := range m.probs {
			r.checkOf(p.check).mismatch(p.ex)
		}
		if r.onFinal != nil {
			r.onFinal(m.d, m.probs)
		}
		done = append(done, m.d)
	}
	if err := r.settled(qctx, tx, done, rows, info); err != nil {
		return nil, nil, err
	}
	return next, reread, nil
}

func dropDoc(ds []*docState, d *docState) []*docState {
	for i, x := range ds {
		if x == d {
			return append(ds[:i], ds[i+1:]...)
		}
	}
	return ds
}

func (r *collRun) checkOf(name string) *Check {
	switch name {
	case checkIDMapToPG:
		return r.toPG
	case checkIDMapToMongo:
		return r.toMgo
	}
	return r.diff
}

// roundInfo resolves what the comparison of these documents needs besides
// their rows.
func (r *collRun) roundInfo(ctx context.Context, q queryer, pending []*docState, rows map[string]*pgRow) (*roundInfo, error) {
	info := &roundInfo{uuids: map[string]idmapEntry{}, present: map[string]bool{}, dangling: map[string]string{}}
	var uuids []string
	addRefs := func(tp *tablePlan, vals []cval) {
		for i, c := range tp.cols {
			if c.kind == kRef && !vals[i].null {
				uuids = append(uuids, vals[i].s)
			}
		}
	}
	want := map[string][]string{}
	addWant := func(tp *tablePlan, refs []transform.Ref, own []ownVal) {
		for _, ref := range refs {
			if ref.Missing == transform.MissingNull {
				want[ref.Collection] = append(want[ref.Collection], ref.LegacyID)
			}
		}
		for i, o := range own {
			if c := tp.cols[i]; c.kind == kRef && o.ref != "" && c.spec.Ref.Missing == transform.MissingNull {
				want[c.spec.Ref.Collection] = append(want[c.spec.Ref.Collection], o.ref)
			}
		}
	}
	var keys []string
	for _, d := range pending {
		if row := rows[d.key]; row != nil && row.exists && row.vals != nil {
			addRefs(&r.plan.top, row.vals)
			for ci := range r.plan.children {
				if row.children != nil {
					for _, vals := range row.children[ci] {
						addRefs(&r.plan.children[ci].tablePlan, vals)
					}
				}
			}
		}
		if d.row != nil {
			own := d.own
			if own == nil {
				own = &ownRow{}
			}
			addWant(&r.plan.top, d.row.Refs, own.top)
			for ci, cs := range d.row.Children {
				for j, cr := range cs.Rows {
					var o []ownVal
					if ci < len(own.children) && j < len(own.children[ci]) {
						o = own.children[ci][j]
					}
					addWant(&r.plan.children[ci].tablePlan, cr.Refs, o)
				}
			}
			keys = append(keys, d.key)
		}
	}
	var err error
	if info.uuids, err = r.v.pg.resolveUUIDs(ctx, q, uuids); err != nil {
		return nil, err
	}
	if len(want) > 0 {
		if info.present, err = r.v.pg.presentParents(ctx, q, r.v.plans, want); err != nil {
			return nil, err
		}
	}
	if r.plan.nullRefs && len(keys) > 0 {
		if info.dangling, err = r.v.pg.danglingRecords(ctx, q, r.coll, keys); err != nil {
			return nil, err
		}
	}
	return info, nil
}

// settled adds the settled documents to the sums: the Mongo side from the
// transformed documents, the Postgres side computed by Postgres over their
// rows in the same snapshot the comparison used.
func (r *collRun) settled(ctx context.Context, q queryer, done []*docState, rows map[string]*pgRow, info *roundInfo) error {
	if r.continuous {
		for _, d := range done {
			if d.data && d.raw != nil {
				r.diff.Counts["compared"]++
			}
		}
		return nil
	}
	var ids []string
	for _, d := range done {
		if d.data && d.raw != nil {
			r.diff.Counts["compared"]++
		}
		if d.rejErr != nil {
			r.diff.Counts["rejected_by_transform"]++
		}
		if row := rows[d.key]; row != nil && row.exists && !row.deleted && (d.data || d.raw == nil) {
			ids = append(ids, row.newID)
		}
		if d.row == nil {
			continue
		}
		own := d.own
		if own == nil {
			own = &ownRow{}
		}
		r.sums.addMongo(&r.plan.top, r.expectedValues(&r.plan.top, d.row.Values, d.row.Refs, own.top, info))
		for ci := range r.plan.children {
			ch := &r.plan.children[ci]
			for j, cr := range d.row.Children[ci].Rows {
				var o []ownVal
				if ci < len(own.children) && j < len(own.children[ci]) {
					o = own.children[ci][j]
				}
				r.sums.addMongo(&ch.tablePlan, r.expectedValues(&ch.tablePlan, cr.Values, cr.Refs, o, info))
			}
		}
	}
	return r.pgSums(ctx, q, ids)
}

// pgSums adds Postgres' sums over the rows ids (and their child rows).
func (r *collRun) pgSums(ctx context.Context, q queryer, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	plan := r.plan
	srs, err := r.v.pg.tableSums(ctx, q, &plan.top, plan.idCol, plan.idArrayType(), plan.liveRow("t"), ids)
	if err != nil {
		return err
	}
	for _, sr := range srs {
		r.sums.addPG(&plan.top, sr)
	}
	for ci := range plan.children {
		ch := &plan.children[ci]
		srs, err := r.v.pg.tableSums(ctx, q, &ch.tablePlan, ch.parentCol, plan.idArrayType(), "true", ids)
		if err != nil {
			return err
		}
		for _, sr := range srs {
			r.sums.addPG(&ch.tablePlan, sr)
		}
	}
	return nil
}
