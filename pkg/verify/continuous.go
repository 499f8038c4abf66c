package verify

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// Continuous is the background verifier of `cdc run` and `cdc sink`
// (verify.continuous.rate): during the soak window it compares documents
// with their rows all the time, at a bounded rate, and says at once when
// one differs.
//
// It walks the collections one after another, each in _id order a chunk
// at a time, and starts over after the last, at most Rate documents per
// second: every document is compared once in every pass, a pass taking
// about (documents / Rate) seconds. A chunk is compared
// as `cdc verify` compares documents (document_diff and
// idmap_mongo_to_pg, with verify's own decoding of money and
// identifiers), with the same live-traffic rules: a difference counts only
// once the sink has consumed every change up to the Mongo read and it was
// seen twice with the same document and row version. A document still in
// flight after Recheck is set aside (counted as unsettled, not as a
// mismatch: lag is the lag alerts' business), and so is one explained by
// an open dead letter (the dead-letter alerts'). What is left is a
// candidate, compared again after Recheck: only a difference that is
// still there then counts (Metrics.Mismatch, cdc.verify_mismatches, a
// warning in the log). So a change in flight at either moment is never a
// mismatch, and a row changed behind the replicator's back (a 1E-18
// change to an amount) is counted within about a pass plus Recheck.
//
// Run's failures (a database unreachable) are logged and retried after a
// pause: verification never stops the replicator.
type Continuous struct {
	v       *Verifier
	cfg     ContinuousConfig
	met     Metrics
	log     *zap.Logger
	pool    *pgxpool.Pool
	colls   []string
	cursors map[string]cursor
	next    int // the collection whose chunk comes next
	pending []candidate
	now     func() time.Time
}

// maxCandidates bounds the mismatches waiting for their re-check (memory,
// and the time the re-checks take from the walk when everything differs).
const maxCandidates = 1000

// ContinuousChecks are the checks a Continuous verifier counts mismatches
// of (Metrics.Mismatch's check).
var ContinuousChecks = []string{checkDiff, checkIDMapToPG, checkIDMapToMongo}

// Metrics receives a Continuous verifier's counts (pkg/metrics implements
// it as cdc_verify_checked_total and cdc_verify_mismatches_total).
type Metrics interface {
	// Checked adds n documents of collection compared and settled.
	Checked(collection string, n int)
	// Mismatch counts one confirmed mismatch of a document.
	Mismatch(collection, check string)
}

// ContinuousConfig configures a Continuous verifier.
type ContinuousConfig struct {
	// Database is the source database. Required.
	Database string
	// Collections are the collections to walk (every replicated one).
	// Required.
	Collections []string
	// Consumer names the sink's row in cdc.sink_positions. Default
	// "cdc-sink".
	Consumer string
	// LaneConsumers are every lane's consumer with sink lanes (Config).
	LaneConsumers []string
	// Rate is the most documents compared per second. Required (> 0).
	Rate int
	// Recheck is how long a mismatch waits before it is compared again,
	// and counted only if it is still there; it also bounds how long a
	// comparison waits for the sink. Default 30s.
	Recheck time.Duration
	// ChunkSize is how many documents one read takes. Default the rate,
	// at most 100.
	ChunkSize int
	// QueryTimeout bounds each database operation. Default 1m.
	QueryTimeout time.Duration
	// RetryAfter is the pause after a failed round. Default 5s.
	RetryAfter time.Duration
}

func (c ContinuousConfig) withDefaults() ContinuousConfig {
	if c.Consumer == "" {
		c.Consumer = Default().Consumer
	}
	if c.Recheck == 0 {
		c.Recheck = 30 * time.Second
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = min(max(c.Rate, 1), 100)
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = time.Minute
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 5 * time.Second
	}
	return c
}

// Validate checks the configuration (after defaults).
func (c ContinuousConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Database == "":
		return fmt.Errorf("%w: database is required", ErrInvalidConfig)
	case len(c.Collections) == 0:
		return fmt.Errorf("%w: no collections to verify", ErrInvalidConfig)
	case c.Rate <= 0:
		return fmt.Errorf("%w: rate must be positive, got %d", ErrInvalidConfig, c.Rate)
	case c.Recheck < 0:
		return fmt.Errorf("%w: recheck must not be negative, got %s", ErrInvalidConfig, c.Recheck)
	case c.ChunkSize < 1 || c.ChunkSize > 10_000:
		return fmt.Errorf("%w: chunk size must be between 1 and 10000, got %d", ErrInvalidConfig, c.ChunkSize)
	}
	return nil
}

// cursor is where the walk of one collection stands: after last, up to
// bound (the greatest _id when the pass began: documents inserted later
// wait for the next pass, or a steady insert load would keep the walk at
// the end for ever).
type cursor struct {
	last    bson.RawValue
	hasLast bool
	bound   bson.RawValue
	started bool
}

// candidate is a mismatch waiting for its re-check.
type candidate struct {
	coll   string
	key    string
	id     []any
	due    time.Time
	checks []string
}

// NewContinuous returns a Continuous verifier over connected clients; set
// holds the sink's mappings, one for every collection. pool is used for
// the verifier's reads and for recording mismatches.
func NewContinuous(client *mongo.Client, pool *pgxpool.Pool, set *transform.Set, cfg ContinuousConfig, met Metrics, log *zap.Logger) (*Continuous, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	colls := slices.Clone(cfg.Collections)
	slices.Sort(colls)
	v, err := New(client, pool, set, Config{
		Database: cfg.Database, Collections: colls, Consumer: cfg.Consumer, LaneConsumers: cfg.LaneConsumers, ChunkSize: cfg.ChunkSize,
		RecheckWait: cfg.Recheck, Examples: 3 * cfg.ChunkSize, QueryTimeout: cfg.QueryTimeout,
	}, log, nil)
	if err != nil {
		return nil, err
	}
	return &Continuous{v: v, cfg: cfg, met: met, log: log, pool: pool, colls: colls, cursors: map[string]cursor{}, now: time.Now}, nil
}

// Run walks the collections until ctx is cancelled, and returns nil then.
func (c *Continuous) Run(ctx context.Context) error {
	defer c.v.mongo.close(context.WithoutCancel(ctx))
	c.log.Info("continuous verification running", zap.Strings("collections", c.colls), zap.Int("rate", c.cfg.Rate),
		zap.Duration("recheck", c.cfg.Recheck))
	per := time.Second / time.Duration(c.cfg.Rate) // the time one document costs
	budget := c.now()
	for {
		if wait := budget.Sub(c.now()); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		n, err := c.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			c.log.Warn("continuous verification: a round failed; retrying", zap.Duration("after", c.cfg.RetryAfter), zap.Error(err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.cfg.RetryAfter):
			}
			budget = c.now()
			continue
		}
		// The rate is a ceiling: a slow round is made up for by one chunk
		// at most, never by a burst.
		cost := time.Duration(n) * per
		budget = maxTime(budget, c.now().Add(-cost)).Add(cost)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// step runs one round: the re-checks that are due, or else the next
// chunk of the walk. It returns how many documents it read.
func (c *Continuous) step(ctx context.Context) (int, error) {
	if len(c.pending) > 0 && !c.pending[0].due.After(c.now()) {
		return c.recheck(ctx)
	}
	for range c.colls {
		coll := c.colls[c.next]
		n, err := c.walk(ctx, coll)
		if err != nil || n > 0 {
			return n, err
		}
		c.next = (c.next + 1) % len(c.colls) // at the end (or empty): the next one
	}
	// Every collection is empty: wait as if a chunk had been read.
	return c.cfg.ChunkSize, nil
}

// walk compares the next chunk of coll and returns its size (0: the
// collection's end, where the walk starts over).
func (c *Continuous) walk(ctx context.Context, coll string) (int, error) {
	cur := c.cursors[coll]
	if !cur.started {
		bound, found, err := c.v.mongo.lastID(ctx, coll)
		if err != nil || !found {
			return 0, err
		}
		cur = cursor{bound: bound, started: true}
	}
	docs, lo, hi, err := c.v.mongo.nextChunk(ctx, coll, cur.last, cur.hasLast, c.cfg.ChunkSize, false)
	if err != nil {
		return 0, err
	}
	end := len(docs) < c.cfg.ChunkSize
	for i, raw := range docs {
		if cmp, ok := compareIDs(raw.Lookup("_id"), cur.bound); ok && cmp > 0 {
			docs, end = docs[:i], true
			break
		}
	}
	if len(docs) == 0 {
		c.cursors[coll] = cursor{}
		return 0, nil
	}
	cur.last, cur.hasLast = docs[len(docs)-1].Lookup("_id"), true
	c.cursors[coll] = cur
	if end {
		// The pass over this collection is done: the next one starts over.
		c.cursors[coll] = cursor{}
		c.next = (c.next + 1) % len(c.colls)
	}
	plan := c.v.plans[coll]
	states := make([]*docState, len(docs))
	for i, raw := range docs {
		d := &docState{key: event.KeyString(raw.Lookup("_id")), data: true}
		d.set(plan, raw, lo, hi)
		states[i] = d
	}
	// A document found different is scheduled for its re-check at once,
	// while the rest of the chunk settles.
	_, err = c.settle(ctx, plan, states, func(d *docState, probs []problem) {
		if len(c.pending) >= maxCandidates || c.isPending(coll, d.key) {
			return // a later pass finds it again
		}
		var checks []string
		for _, p := range probs {
			if !slices.Contains(checks, p.check) {
				checks = append(checks, p.check)
			}
		}
		c.pending = append(c.pending, candidate{coll: coll, key: d.key, id: d.id, due: c.now().Add(c.cfg.Recheck), checks: checks})
		c.log.Info("continuous verification: a difference, re-checked after the recheck delay before it counts",
			zap.String("collection", coll), zap.String("key", d.key), zap.Strings("checks", checks), zap.Duration("recheck", c.cfg.Recheck))
	})
	return len(docs), err
}

func (c *Continuous) isPending(coll, key string) bool {
	for _, p := range c.pending {
		if p.key == key && p.coll == coll {
			return true
		}
	}
	return false
}

// settle compares documents as `cdc verify` does, in continuous mode, and
// counts the settled ones as checked.
func (c *Continuous) settle(ctx context.Context, plan *mappingPlan, states []*docState, onFinal func(*docState, []problem)) (*collRun, error) {
	r := c.v.newCollRun(plan)
	r.continuous, r.onFinal = true, onFinal
	if err := r.settle(ctx, states); err != nil {
		return nil, err
	}
	checked := len(states) - int(r.unsettled) - int(r.explained)
	c.met.Checked(plan.m.Collection, checked)
	if r.unsettled > 0 || r.explained > 0 {
		c.log.Debug("continuous verification: documents set aside", zap.String("collection", plan.m.Collection),
			zap.Int64("in_flight", r.unsettled), zap.Int64("dead_lettered", r.explained))
	}
	return r, nil
}

// mismatchesOf lists the documents the round found different, with the
// checks that failed for each.
func mismatchesOf(r *collRun) map[string][]string {
	out := map[string][]string{}
	for _, ch := range []*Check{r.diff, r.toPG, r.toMgo} {
		for _, ex := range ch.Examples {
			key := ex.ID
			if key == "" {
				continue
			}
			if !slices.Contains(out[key], ch.Name) {
				out[key] = append(out[key], ch.Name)
			}
		}
	}
	return out
}

// recheck compares again the candidates that are due (of one collection
// at a time) and counts those that still differ.
func (c *Continuous) recheck(ctx context.Context) (int, error) {
	now := c.now()
	coll := c.pending[0].coll
	var due, rest []candidate
	for _, p := range c.pending {
		if p.coll == coll && !p.due.After(now) && len(due) < c.cfg.ChunkSize {
			due = append(due, p)
		} else {
			rest = append(rest, p)
		}
	}
	plan := c.v.plans[coll]
	var ids []any
	for i, p := range due {
		if len(p.id) == 0 {
			due[i].id = keyIDs(p.key)
		}
		ids = append(ids, due[i].id...)
	}
	docs, lo, hi, err := c.v.mongo.byIDs(ctx, coll, ids, false)
	if err != nil {
		return 0, err // the candidates stay pending
	}
	byKey := map[string]bson.Raw{}
	for _, raw := range docs {
		byKey[event.KeyString(raw.Lookup("_id"))] = raw
	}
	states := make([]*docState, len(due))
	for i, p := range due {
		d := &docState{key: p.key, id: p.id, data: true}
		d.set(plan, byKey[p.key], lo, hi)
		states[i] = d
	}
	r, err := c.settle(ctx, plan, states, nil)
	if err != nil {
		return 0, err
	}
	c.pending = rest
	confirmed := mismatchesOf(r)
	for _, p := range due {
		if _, ok := confirmed[p.key]; !ok {
			c.log.Info("continuous verification: not counted: the difference is gone on re-check, or the document changed meanwhile", zap.String("collection", coll), zap.String("key", p.key))
		}
	}
	for _, ch := range []*Check{r.diff, r.toPG, r.toMgo} {
		for _, ex := range ch.Examples {
			if ex.ID == "" {
				continue
			}
			if err := c.record(ctx, coll, ch.Name, ex); err != nil {
				return len(due), err
			}
		}
	}
	return len(due), nil
}

// record stores one confirmed mismatch for `cdc status`, then counts it:
// whoever sees the counter move (an alert, a test) finds the row already
// written. It is counted even when the row cannot be written.
func (c *Continuous) record(ctx context.Context, coll, check string, ex Example) error {
	c.log.Warn("continuous verification: mismatch confirmed after re-check", zap.String("collection", coll), zap.String("key", ex.ID),
		zap.String("check", check), zap.String("table", ex.Table), zap.String("column", ex.Column),
		zap.String("mongo", ex.Mongo), zap.String("postgres", ex.Postgres), zap.String("detail", ex.Detail))
	qctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
	defer cancel()
	err := state.RecordVerifyMismatch(qctx, c.pool, state.VerifyMismatch{Collection: coll, DocKey: ex.ID, Check: check,
		Table: ex.Table, Column: ex.Column, Mongo: ex.Mongo, Postgres: ex.Postgres, Detail: ex.Detail})
	c.met.Mismatch(coll, check)
	return pgErr("record a verify mismatch", err)
}
