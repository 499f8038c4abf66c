package replay

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/report"
)

// Gaps refreshes the documents of the open rows of the application's
// dual-write gap log (pg_dualwrite_gaps, resolved_at IS NULL; collection
// and legacy_object_id name the document) and marks those rows resolved.
//
// When: only after the refresh of a row's document was acknowledged by
// JetStream and, with applyTimeout > 0, applied by the live sink (its
// version guard reached the refresh's position, or a newer one) within
// applyTimeout. A document still pending then, or dead-lettered, leaves
// its rows open and counts as an error; so do rows of collections without
// a transform. With applyTimeout 0 rows are resolved once JetStream
// acknowledged the refresh (the sink applies it later). How: one UPDATE
// ... SET resolved_at = now() WHERE id = ANY(...) AND resolved_at IS NULL,
// so a row resolved meanwhile by someone else keeps its time, and a gap
// logged after the read stays open for the next run.
func (r *Refresher) Gaps(ctx context.Context, applyTimeout time.Duration) (*report.Report, error) {
	rep := &report.Report{Command: "replay ids --from-gaps-table", DryRun: r.cfg.DryRun}
	gaps, err := r.readGaps(ctx, rep)
	if err != nil {
		return rep, err
	}
	rep.Note("pg_dualwrite_gaps: %d open rows for %d documents", gaps.total, len(gaps.rows))
	awaited, err := r.refreshGaps(ctx, gaps, rep)
	if err != nil {
		return rep, err
	}
	if r.cfg.DryRun {
		rep.Note("would mark the rows resolved once their refresh is applied")
		return rep, nil
	}
	done, err := r.appliedRefreshes(ctx, awaited, applyTimeout, rep)
	if err != nil {
		return rep, err
	}
	return rep, r.resolveGaps(ctx, gaps, done, rep)
}

// openGaps are the open rows of pg_dualwrite_gaps, by document: one
// document may have been logged many times, and every one of its rows is
// resolved by its one refresh.
type openGaps struct {
	// rows are the gap row ids of each document.
	rows map[DocRef][]int64
	// colls are the collections named, sorted; byColl their documents'
	// keys in the order first read.
	colls  []string
	byColl map[string][]string
	// total counts the rows read, keys that could not be read included.
	total int
}

// readGaps reads the open rows in one query, before any refresh, so that
// a gap logged after the read stays open for the next run.
func (r *Refresher) readGaps(ctx context.Context, rep *report.Report) (*openGaps, error) {
	rows, err := r.pool.Query(ctx, `SELECT id, collection, legacy_object_id FROM pg_dualwrite_gaps
		WHERE resolved_at IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("read pg_dualwrite_gaps: %w", err)
	}
	g := &openGaps{rows: map[DocRef][]int64{}, byColl: map[string][]string{}}
	for rows.Next() {
		var id int64
		var ref DocRef
		var raw string
		if err := rows.Scan(&id, &ref.Collection, &raw); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read pg_dualwrite_gaps: %w", err)
		}
		g.total++
		// The application logs keys in its own form (an upper-case hex
		// ObjectId, Extended JSON of a number): read them as operator
		// input and key them as the sink does, or the refresh would be
		// applied and the gap row never resolved.
		key, err := event.CanonicalKey(raw)
		if err != nil {
			rep.Errors++
			rep.Note("pg_dualwrite_gaps row %d: %v: left open", id, err)
			continue
		}
		ref.Key = key
		if _, ok := g.rows[ref]; !ok {
			if _, seen := g.byColl[ref.Collection]; !seen {
				g.colls = append(g.colls, ref.Collection)
			}
			g.byColl[ref.Collection] = append(g.byColl[ref.Collection], ref.Key)
		}
		g.rows[ref] = append(g.rows[ref], id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pg_dualwrite_gaps: %w", err)
	}
	sort.Strings(g.colls)
	return g, nil
}

// refreshGaps refreshes the gaps' documents collection by collection; a
// collection without a transform cannot be refreshed, so its rows stay
// open and count as errors rather than failing the others.
func (r *Refresher) refreshGaps(ctx context.Context, g *openGaps, rep *report.Report) (map[DocRef]Awaited, error) {
	awaited := map[DocRef]Awaited{}
	for _, c := range g.colls {
		if _, ok := r.set.Get(c); !ok {
			n := 0
			for _, k := range g.byColl[c] {
				n += len(g.rows[DocRef{c, k}])
			}
			rep.Errors += int64(n)
			rep.Note("%s: no transform maps this collection: %d gap rows left open", c, n)
			continue
		}
		aw, err := r.Refresh(ctx, c, g.byColl[c], rep)
		for k, v := range aw {
			awaited[k] = v
		}
		if err != nil {
			return awaited, err
		}
	}
	return awaited, nil
}

// appliedRefreshes returns the documents whose gap rows may be resolved:
// with applyTimeout 0 every acknowledged refresh, otherwise only those the
// sink applied within it, since a row resolved before its refresh is
// applied would hide a gap the sink never closed.
func (r *Refresher) appliedRefreshes(ctx context.Context, awaited map[DocRef]Awaited, applyTimeout time.Duration, rep *report.Report) ([]DocRef, error) {
	done := make([]DocRef, 0, len(awaited))
	for ref := range awaited {
		done = append(done, ref)
	}
	if applyTimeout <= 0 || len(awaited) == 0 {
		return done, nil
	}
	pending, dead, err := WaitApplied(ctx, r.pool, awaited, applyTimeout)
	if err != nil {
		return nil, err
	}
	skip := map[DocRef]bool{}
	for _, p := range pending {
		skip[p] = true
		rep.Errors++
		rep.Note("%s %s: refresh not applied within %s: gap left open", p.Collection, p.Key, applyTimeout)
	}
	for _, d := range dead {
		skip[d] = true
		rep.Errors++
		rep.Note("%s %s: refresh dead-lettered (see cdc dlq list): gap left open", d.Collection, d.Key)
	}
	done = done[:0]
	for ref := range awaited {
		if !skip[ref] {
			done = append(done, ref)
		}
	}
	return done, nil
}

// resolveGaps marks the rows of the done documents resolved in one
// statement that leaves alone a row someone resolved meanwhile (its time
// is kept).
func (r *Refresher) resolveGaps(ctx context.Context, g *openGaps, done []DocRef, rep *report.Report) error {
	var ids []int64
	for _, ref := range done {
		ids = append(ids, g.rows[ref]...)
	}
	if len(ids) == 0 {
		return nil
	}
	tag, err := r.pool.Exec(ctx, `UPDATE pg_dualwrite_gaps SET resolved_at = now() WHERE id = ANY($1) AND resolved_at IS NULL`, ids)
	if err != nil {
		rep.Errors++
		return fmt.Errorf("mark pg_dualwrite_gaps resolved: %w", err)
	}
	rep.Note("marked %d gap rows resolved", tag.RowsAffected())
	return nil
}
