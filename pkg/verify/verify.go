package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
)

// Verifier compares MongoDB with PostgreSQL. Create with New; Run once.
// It only reads both databases. It is not safe for concurrent use.
type Verifier struct {
	mongo    *mongoSide
	pg       *pgSide
	set      *transform.Set
	plans    map[string]*mappingPlan
	cfg      Config
	log      *zap.Logger
	progress Progress
	report   *Report
	// nss are the replicated namespaces (db.collection).
	nss []string
	// oplogBroken is set once the oplog could not be read.
	oplogBroken error
	// quietFrom/quietTo: the oplog showed no replicated change in
	// (quietFrom, quietTo].
	quietFrom int64
	quietTo   event.ClusterTime
}

// New returns a Verifier over connected clients. set holds the mappings
// the sink uses; every collection of cfg.Collections must be mapped. A nil
// progress shows nothing.
func New(client *mongo.Client, pool *pgxpool.Pool, set *transform.Set, cfg Config, log *zap.Logger, progress Progress) (*Verifier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if progress == nil {
		progress = NopProgress{}
	}
	v := &Verifier{set: set, cfg: cfg, log: log, progress: progress, plans: map[string]*mappingPlan{},
		pg: &pgSide{pool: pool, consumer: cfg.Consumer, consumers: cfg.LaneConsumers, timeout: cfg.QueryTimeout}}
	for _, m := range set.Mappings() {
		p, err := newMappingPlan(m)
		if err != nil {
			return nil, err
		}
		v.plans[m.Collection] = p
	}
	for _, c := range cfg.Collections {
		if _, ok := v.plans[c]; !ok {
			return nil, fmt.Errorf("%w: collection %q has no mapping (mapped: %v)", ErrInvalidConfig, c, set.Collections())
		}
	}
	for _, c := range cfg.Replicated {
		v.nss = append(v.nss, cfg.Database+"."+c)
	}
	ms, err := newMongoSide(client, cfg.Database, cfg.QueryTimeout)
	if err != nil {
		return nil, err
	}
	v.mongo = ms
	return v, nil
}

// Run runs every check and returns the report. The error is non-nil when
// the run stopped early (a database unreachable, ctx cancelled); the
// report then holds what was done, the error in Report.Errors, and is not
// OK.
func (v *Verifier) Run(ctx context.Context) (*Report, error) {
	defer v.mongo.close(context.WithoutCancel(ctx))
	mode := "full"
	if v.cfg.Sample > 0 {
		mode = "sample"
	}
	colls := slices.Clone(v.cfg.Collections)
	colls = v.orderCollections(colls)
	rep := &Report{Version: ReportVersion, StartedAt: time.Now().UTC(), Database: v.cfg.Database, Mode: mode,
		Sample: v.cfg.Sample, Collections: colls, Checks: []*Check{}}
	v.report = rep
	err := v.run(ctx, colls)
	if err != nil {
		re := RunError{Error: err.Error()}
		var ue *UnreachableError
		if errors.As(err, &ue) {
			re.System = ue.System
		}
		rep.Errors = append(rep.Errors, re)
	}
	if v.oplogBroken != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the oplog could not be read (%v): a mismatch is confirmed only once the sink's position passes the read, and counts are not corrected for changes in flight", v.oplogBroken))
	}
	rep.FinishedAt = time.Now().UTC()
	rep.finish()
	return rep, err
}

func (v *Verifier) run(ctx context.Context, colls []string) error {
	cat := newCheck(checkCatalog, "*", v.cfg.Examples)
	v.report.Checks = append(v.report.Checks, cat)
	cctx, cancel := context.WithTimeout(ctx, v.cfg.QueryTimeout)
	err := transform.CheckCatalog(cctx, v.pg.pool, v.set)
	cancel()
	switch {
	case errors.Is(err, transform.ErrSchemaMismatch):
		cat.mismatch(Example{Detail: err.Error()})
		return fmt.Errorf("the transforms do not match the PostgreSQL catalog; nothing else was compared")
	case err != nil:
		err = pgErr("check the transforms against the catalog", err)
		cat.fail(err)
		return err
	}
	cat.Counts["mappings"] = int64(len(v.plans))
	if _, err := v.mongo.now(ctx); err != nil {
		return err
	}
	for _, c := range colls {
		plan := v.plans[c]
		r := v.newCollRun(plan)
		fk := newCheck(checkFK, c, v.cfg.Examples)
		stray := newCheck(checkStray, c, v.cfg.Examples)
		enums := newCheck(checkEnums, c, v.cfg.Examples)
		v.report.Checks = append(v.report.Checks, r.checks()...)
		v.report.Checks = append(v.report.Checks, fk, stray, enums)
		start := time.Now()
		err := r.run(ctx)
		if err == nil {
			err = v.fkCheck(ctx, plan, fk)
		} else {
			fk.fail(fmt.Errorf("not run: %w", err))
		}
		for _, x := range []struct {
			ch  *Check
			run func(context.Context, *mappingPlan, *Check) error
		}{{stray, v.strayCheck}, {enums, v.enumCheck}} {
			if err != nil && (IsUnreachable(err) || ctx.Err() != nil) {
				x.ch.fail(fmt.Errorf("not run: %w", err))
				continue
			}
			if xerr := x.run(ctx, plan, x.ch); xerr != nil {
				x.ch.fail(xerr)
				if err == nil {
					err = xerr
				}
			}
		}
		v.log.Info("verified collection", zap.String("collection", c), zap.Duration("took", time.Since(start)), zap.Error(err))
		if err != nil {
			if IsUnreachable(err) || ctx.Err() != nil {
				return err
			}
			v.log.Warn("collection not verified", zap.String("collection", c), zap.Error(err))
		}
	}
	if v.hasLedger(colls) {
		if err := v.ledgerChecks(ctx); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// orderCollections sorts collections by name (a stable report).
func (v *Verifier) orderCollections(colls []string) []string {
	sort.Strings(colls)
	return slices.Compact(colls)
}

// passed reports whether the sink, at applied position pos (packed),
// has consumed every change up to hi: pos is at or past hi, or the oplog
// holds no change to a replicated collection in (pos, hi]. With quick,
// the oplog is consulted only when an earlier look already covers the
// window (the sink is moving: waiting is cheaper than reading the oplog).
func (v *Verifier) passed(ctx context.Context, pos int64, hi event.ClusterTime, quick bool) (bool, error) {
	if pos >= hi.Pack() {
		return true, nil
	}
	// An earlier look found nothing in (quietFrom, quietTo].
	if v.quietTo.Pack() > 0 && pos >= v.quietFrom && hi.Compare(v.quietTo) <= 0 {
		return true, nil
	}
	if quick {
		return false, nil
	}
	ops, err := v.oplog(ctx, v.nss, event.Unpack(pos), hi, 1)
	if err != nil {
		if errors.Is(err, errOplog) {
			return false, nil
		}
		return false, err
	}
	if len(ops) == 0 {
		v.quietFrom, v.quietTo = pos, hi
		return true, nil
	}
	return false, nil
}

// oplog reads the oplog's changes, remembering (for the report) that it
// cannot be read.
func (v *Verifier) oplog(ctx context.Context, nss []string, from, to event.ClusterTime, limit int) ([]oplogOp, error) {
	if v.oplogBroken != nil {
		return nil, v.oplogBroken
	}
	ops, err := v.mongo.oplogChanges(ctx, nss, from, to, limit)
	if errors.Is(err, errOplog) {
		v.oplogBroken = err
		v.log.Warn("the oplog cannot be read; live-traffic corrections are off", zap.Error(err))
	}
	return ops, err
}

// idleAfter is how long the sink's position must stand still before the
// oplog is read to learn whether anything is left for it to consume.
const idleAfter = 250 * time.Millisecond

// waitPassed waits until the sink has consumed every change up to hi, or
// until deadline (a zero deadline: RecheckWait from now). It reports
// whether the sink got there. While the sink's position moves it only
// polls the position; once it stands still, the oplog says whether
// changes are still to come.
func (v *Verifier) waitPassed(ctx context.Context, hi event.ClusterTime, deadline time.Time) (bool, error) {
	if deadline.IsZero() {
		deadline = time.Now().Add(v.cfg.RecheckWait)
	}
	last, since := int64(-1), time.Now()
	var looked time.Time // last read of the oplog
	for first := true; ; first = false {
		qctx, cancel := context.WithTimeout(ctx, v.cfg.QueryTimeout)
		pos, err := v.pg.appliedPosition(qctx, v.pg.pool)
		cancel()
		if err != nil {
			return false, err
		}
		if pos != last {
			last, since = pos, time.Now()
		}
		look := first || (time.Since(since) >= idleAfter && time.Since(looked) >= 2*idleAfter)
		if look {
			looked = time.Now()
		}
		ok, err := v.passed(ctx, pos, hi, !look)
		if err != nil || ok {
			return ok, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// recheckable runs a Postgres-only check; when it finds problems, it runs
// it again once the sink has consumed every change up to now (bounded by
// RecheckWait), and keeps the second answer: a problem a change in flight
// explains is gone by then.
func (v *Verifier) recheckable(ctx context.Context, ch *Check, run func(ctx context.Context, ch *Check) error) error {
	first := newCheck(ch.Name, ch.Collection, ch.maxExamples)
	if err := run(ctx, first); err != nil {
		ch.fail(err)
		return err
	}
	if first.Mismatches == 0 {
		*ch = *first
		return nil
	}
	now, err := v.mongo.now(ctx)
	if err != nil {
		ch.fail(err)
		return err
	}
	ok, err := v.waitPassed(ctx, now, time.Time{})
	if err != nil {
		ch.fail(err)
		return err
	}
	second := newCheck(ch.Name, ch.Collection, ch.maxExamples)
	if err := run(ctx, second); err != nil {
		ch.fail(err)
		return err
	}
	*ch = *second
	if !ok && ch.Mismatches > 0 {
		ch.note("re-checked after %s without the sink catching up with the current cluster time", v.cfg.RecheckWait)
	}
	return nil
}
