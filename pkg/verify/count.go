package verify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/event"
)

// countCheck compares countDocuments with the table's row count. The two
// reads happen at different moments: the row count is taken once the sink
// has consumed every change up to the Mongo count's read, and the inserts
// and deletes the oplog records between the two are accounted for. A
// difference is retried until RecheckWait, unless it is seen twice with
// nothing in flight (then it persists). It returns the Mongo count.
func (r *collRun) countCheck(ctx context.Context) (int64, error) {
	v := r.v
	deadline := time.Now().Add(v.cfg.RecheckWait)
	ns := v.cfg.Database + "." + r.coll
	var prev string
	for attempt := 1; ; attempt++ {
		mongoN, lo, hi, err := v.mongo.count(ctx, r.coll)
		if err != nil {
			return 0, err
		}
		caughtUp, err := v.waitPassed(ctx, hi, deadline)
		if err != nil {
			return mongoN, err
		}
		pos, pgN, err := r.pgCount(ctx)
		if err != nil {
			return mongoN, err
		}
		m, err := r.countMatches(ctx, ns, mongoN, pgN, lo, hi, event.Unpack(pos))
		if err != nil {
			return mongoN, err
		}
		state := fmt.Sprintf("%d/%d", mongoN, pgN)
		persists := !m.ok && caughtUp && m.quiet && state == prev
		prev = ""
		if caughtUp && m.quiet {
			prev = state
		}
		v.log.Debug("count attempt", zap.String("collection", r.coll), zap.Int("attempt", attempt), zap.Int64("mongo", mongoN), zap.Int64("pg", pgN),
			zap.Bool("ok", m.ok), zap.Int64("corr", m.corr), zap.Stringer("lo", lo), zap.Stringer("hi", hi), zap.Stringer("pos", event.Unpack(pos)))
		if m.ok || persists || time.Now().After(deadline) {
			r.count.Counts["mongo"] = mongoN
			r.count.Counts["postgres"] = pgN
			r.count.Counts["in_flight"] = m.corr
			r.count.Counts["attempts"] = int64(attempt)
			if m.note != "" {
				r.count.note("%s", m.note)
			}
			if !m.ok {
				detail := fmt.Sprintf("countDocuments %d, rows %d", mongoN, pgN)
				if !persists {
					detail += fmt.Sprintf(" (%d changes in flight accounted for; still different after --recheck-wait %s)", m.corr, v.cfg.RecheckWait)
				}
				r.count.mismatch(Example{Table: r.plan.top.table, Mongo: fmt.Sprint(mongoN), Postgres: fmt.Sprint(pgN), Detail: detail})
			}
			return mongoN, nil
		}
		select {
		case <-ctx.Done():
			return mongoN, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// countMatch is the outcome of one count comparison.
type countMatch struct {
	ok    bool
	corr  int64  // changes in flight accounted for
	quiet bool   // the oplog shows no change of the collection between the reads
	note  string // why no correction was possible
}

// countMatches decides whether pgN rows at sink position pos agree with
// mongoN documents counted at some moment in [lo, hi]: Postgres holds
// Mongo's state at pos, which differs from the counted one by the inserts
// and deletes between the two.
func (r *collRun) countMatches(ctx context.Context, ns string, mongoN, pgN int64, lo, hi, pos event.ClusterTime) (countMatch, error) {
	// Changes between the count and the position, and within the count's
	// own window [lo, hi].
	from, to := hi, pos
	sign := int64(1)
	if pos.Compare(hi) < 0 {
		from, to, sign = pos, hi, -1
	}
	after, err := r.v.oplog(ctx, []string{ns}, from, to, 0)
	var within []oplogOp
	if err == nil {
		within, err = r.v.oplog(ctx, []string{ns}, lo, hi, 0)
	}
	if err != nil {
		if errors.Is(err, errOplog) {
			return countMatch{ok: mongoN == pgN, note: err.Error()}, nil
		}
		return countMatch{}, err
	}
	var between int64
	for _, op := range after {
		between += netOf(op)
	}
	m := countMatch{corr: sign * between, quiet: len(after) == 0 && len(within) == 0}
	// The count saw the changes of [lo, hi] up to an unknown point: any
	// suffix of them may be missing from it.
	base := mongoN + sign*between
	if pgN == base {
		m.ok = true
		return m, nil
	}
	suffix := int64(0)
	for i := len(within) - 1; i >= 0; i-- {
		suffix += netOf(within[i])
		if pgN == base+suffix {
			m.ok, m.corr = true, m.corr+suffix
			return m, nil
		}
	}
	return m, nil
}

func netOf(op oplogOp) int64 {
	switch op.op {
	case "i":
		return 1
	case "d":
		return -1
	}
	return 0
}

// pgCount reads the sink's position and the row count in one snapshot.
func (r *collRun) pgCount(ctx context.Context) (pos, n int64, err error) {
	v := r.v
	ctx, cancel := context.WithTimeout(ctx, v.cfg.QueryTimeout)
	defer cancel()
	tx, err := v.pg.snapshot(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if pos, err = v.pg.appliedPosition(ctx, tx); err != nil {
		return 0, 0, err
	}
	n, err = v.pg.countRows(ctx, tx, r.plan)
	return pos, n, err
}
