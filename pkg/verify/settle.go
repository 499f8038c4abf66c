package verify

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
)

// Settling: each round compares the pending documents with one Postgres
// snapshot, and a document that differs is compared again until the
// difference is explained by the sink's lag, persists, or outlasts
// --recheck-wait. The sums of the settled documents are taken in the same
// snapshot.

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
	var s roundSort
	var mismatched []verdict
	for _, d := range pending {
		probs := r.compare(d, rows[d.key], info)
		if len(probs) == 0 {
			s.done = append(s.done, d)
			continue
		}
		mismatched = append(mismatched, verdict{d, probs})
	}
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
		if err := r.sortMismatched(ctx, &s, mismatched, rows, dead, pos, now, *deadline); err != nil {
			return nil, nil, err
		}
	}
	for _, m := range s.final {
		for _, p := range m.probs {
			r.checkOf(p.check).mismatch(p.ex)
		}
		if r.onFinal != nil {
			r.onFinal(m.d, m.probs)
		}
		s.done = append(s.done, m.d)
	}
	if err := r.settled(qctx, tx, s.done, rows, info); err != nil {
		return nil, nil, err
	}
	return s.next, s.reread, nil
}

// verdict is a document found different in a round, with how.
type verdict struct {
	d     *docState
	probs []problem
}

// roundSort is where a round puts each document: settled (done), to
// report as different for good (final), waiting for the sink (next), or
// to read again from Mongo (reread).
type roundSort struct {
	next, reread, done []*docState
	final              []verdict
}

// sortMismatched sorts the mismatched documents of a round, in order;
// past the deadline, one that would wait or be read again is reported (or,
// in continuous mode, set aside as unsettled) instead.
func (r *collRun) sortMismatched(ctx context.Context, s *roundSort, mismatched []verdict, rows map[string]*pgRow, dead map[string]string,
	pos int64, now, deadline time.Time) error {
	passed := map[event.ClusterTime]bool{}
	for _, m := range mismatched {
		decided, err := r.sortOne(ctx, s, m, rows[m.d.key], dead, pos, passed)
		if err != nil {
			return err
		}
		if decided || !now.After(deadline) {
			continue
		}
		d := m.d
		if r.continuous {
			r.unsettled++
			s.next, s.reread = dropDoc(s.next, d), dropDoc(s.reread, d)
			continue
		}
		for i := range m.probs {
			m.probs[i].ex.Detail += fmt.Sprintf(" (not settled within --recheck-wait %s: the sink's position %s had not passed the read at %s, or the document kept changing)",
				r.v.cfg.RecheckWait, event.Unpack(pos), d.hi)
		}
		s.final = append(s.final, m)
		s.next, s.reread = dropDoc(s.next, d), dropDoc(s.reread, d)
	}
	return nil
}

// sortOne puts one mismatched document where it belongs. decided says it
// is settled or final for this round; otherwise it waits for the sink or
// is read again, and the deadline applies to it. passed caches, per read
// time, whether the sink has passed it.
func (r *collRun) sortOne(ctx context.Context, s *roundSort, m verdict, row *pgRow, dead map[string]string,
	pos int64, passed map[event.ClusterTime]bool) (decided bool, err error) {
	d := m.d
	var ver int64
	if row != nil {
		ver = row.version
	}
	if ver > d.lo.Pack() {
		// Postgres applied a change made after (or while) Mongo
		// was read: read Mongo again.
		s.reread = append(s.reread, d)
		return false, nil
	}
	ok, seen := passed[d.hi]
	if !seen {
		if ok, err = r.v.passed(ctx, pos, d.hi, true); err != nil {
			return false, err
		}
		passed[d.hi] = ok
	}
	reason, deadLettered := dead[d.key]
	switch {
	case !ok:
		s.next = append(s.next, d)
	case deadLettered && r.continuous:
		// Explained, and alerted on as a dead letter already.
		r.explained++
		s.done = append(s.done, d)
		return true, nil
	case deadLettered:
		// The sink caught up and holds the document behind an
		// open dead letter: that explains the difference.
		for i := range m.probs {
			m.probs[i].ex.Detail += " (the document has an open dead letter: " + clip(reason) + ")"
		}
		s.final = append(s.final, m)
		return true, nil
	case d.candidate == fingerprint(d, row, m.probs):
		s.final = append(s.final, m) // seen twice: it persists
		return true, nil
	default:
		d.candidate = fingerprint(d, row, m.probs)
		s.reread = append(s.reread, d)
	}
	return false, nil
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
