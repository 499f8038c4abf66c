package sink

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
)

// Applier writes units to Postgres: version guard, id_map, rows, dead
// letters and the stream position, all in one transaction per batch.
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
// position row written with each batch; "" writes none (replays).
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

// DeadLetter is one event the batch dead-lettered.
type DeadLetter struct {
	EventID   string
	DB, Coll  string
	DocKey    string
	Class     string
	Reason    string
	StreamSeq uint64
	Envelope  []byte
}

// DeadLetters lists what the batch dead-lettered.
func (r *Result) DeadLetters() []DeadLetter {
	out := make([]DeadLetter, 0, len(r.dead))
	for _, it := range r.dead {
		cls, reason := classify(it.reject)
		out = append(out, DeadLetter{EventID: it.ev.ID, DB: it.ev.Source.DB, Coll: it.ev.Source.Coll, DocKey: it.docKey,
			Class: cls, Reason: reason, StreamSeq: it.seq, Envelope: it.raw})
	}
	return out
}

// classify names a dead letter's class and reason.
func classify(err error) (string, string) {
	if err == nil {
		return "poison", "unknown"
	}
	var pe *parkedError
	if errors.As(err, &pe) {
		return "parked", pe.Error()
	}
	if rej, ok := transform.AsRejection(err); ok {
		if strings.HasPrefix(rej.Reason, "append-only violation") {
			return "violation", rej.Reason
		}
		return "rejected", rej.Reason
	}
	return "poison", err.Error()
}

// Result counts what a batch did.
type Result struct {
	Applied      int
	Skipped      int // at or behind the stored version, or no-ops
	DeadLettered int
	// Incomplete counts events of transactions ApplyRaw did not get whole.
	Incomplete int
	// Waiting counts events set aside for a parent that has not arrived.
	Waiting int
	// RefillError is why re-applying child rows whose references waited
	// for a parent of this batch failed (their dangling records stay).
	RefillError string
	// ByCollection counts applied events per collection.
	ByCollection map[string]int
	// Counts counts events by collection, operation and outcome.
	Counts map[Count]int
	// LastClusterTime is the newest cluster time applied.
	LastClusterTime event.ClusterTime
	// dead are the items dead-lettered, for the DLQ stream.
	dead []*item
	// waiting are units set aside for a parent that has not arrived
	// (policy wait): not applied, not acknowledged, offered again later.
	waiting []*unit
}

// Position is the stream position recorded with a batch.
type Position struct {
	// Floor is the highest sequence such that every message at or below
	// it has been applied or dead-lettered.
	Floor uint64
}

// Apply commits units and the position in one Postgres transaction.
// Poison units are dead-lettered (a whole Mongo transaction together) and
// the rest commits; retryable and fatal errors are returned with nothing
// committed.
func (a *Applier) Apply(ctx context.Context, units []*unit, pos Position) (Result, error) {
	return a.apply(ctx, units, pos, nil)
}

// parkedError marks an event held behind an open dead letter of its
// document: applying it over the gap could leave a state that never
// existed in Mongo.
type parkedError struct {
	coll, key string
}

func (e *parkedError) Error() string {
	return fmt.Sprintf("parked: document %s %s has an open dead letter; this event waits for `cdc dlq retry` or `cdc dlq drop`", e.coll, e.key)
}

// begin starts a batch transaction. Foreign keys (DEFERRABLE in the
// schema) are checked at the end, so a parent and its child may arrive in
// either order within one batch.
func (a *Applier) begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL DEFERRED"); err != nil {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("defer constraints: %w", err)
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

func (a *Applier) apply(ctx context.Context, units []*unit, pos Position, before func(pgx.Tx) error) (Result, error) {
	res := Result{ByCollection: map[string]int{}}
	tx, err := a.begin(ctx)
	if err != nil {
		return res, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after commit
	if before != nil {
		if err := before(tx); err != nil {
			return res, err
		}
	}
	held, err := a.heldDocs(ctx, tx, units)
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
	for _, u := range rejected {
		bad = append(bad, u)
		holdUnit(held, u)
	}
	for _, u := range res.waiting {
		res.Waiting += len(u.items)
		for _, it := range u.items {
			res.count(it, OutcomeWaiting)
		}
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
		if tx, err = a.begin(ctx); err != nil {
			return res, err
		}
		if before != nil {
			if err := before(tx); err != nil {
				return res, err
			}
		}
		r = Result{ByCollection: map[string]int{}}
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
	for _, u := range bad {
		if err := a.deadLetter(ctx, tx, u); err != nil {
			return res, err
		}
		res.DeadLettered += len(u.items)
		res.dead = append(res.dead, u.items...)
		for _, it := range u.items {
			var pe *parkedError
			if errors.As(it.reject, &pe) {
				res.count(it, OutcomeParked)
			} else {
				res.count(it, OutcomeDeadLettered)
			}
		}
	}
	if a.consumer != "" { // a replay applier leaves the live consumer's position alone
		if _, err := tx.Exec(ctx, `
			INSERT INTO cdc.sink_positions (consumer, stream, stream_seq, cluster_time, applied_at)
			VALUES ($1, $2, $3, $4, now())
			ON CONFLICT (consumer) DO UPDATE
			SET stream = EXCLUDED.stream, stream_seq = EXCLUDED.stream_seq,
			    cluster_time = GREATEST(cdc.sink_positions.cluster_time, EXCLUDED.cluster_time), applied_at = now()`,
			a.consumer, a.stream, int64(pos.Floor), res.LastClusterTime.Pack()); err != nil {
			return res, fmt.Errorf("record position: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	return res, nil
}

// heldDocs returns the documents of units that have an open dead letter.
func (a *Applier) heldDocs(ctx context.Context, tx pgx.Tx, units []*unit) (map[docRef]bool, error) {
	var colls, keys []string
	for _, u := range units {
		for _, it := range u.items {
			if it.mapping != nil && !a.unparked[it.mapping.Collection] {
				colls, keys = append(colls, it.mapping.Collection), append(keys, it.docKey)
			}
		}
	}
	held := map[docRef]bool{}
	if len(colls) == 0 {
		return held, nil
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT d.collection, d.doc_key FROM cdc.dead_letters d
		JOIN unnest($1::text[], $2::text[]) AS k(collection, doc_key) USING (collection, doc_key)
		WHERE d.status = 'open'`, colls, keys)
	if err != nil {
		return nil, fmt.Errorf("open dead letters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k docRef
		if err := rows.Scan(&k.coll, &k.key); err != nil {
			return nil, fmt.Errorf("open dead letters: %w", err)
		}
		held[k] = true
	}
	return held, rows.Err()
}

func holdUnit(held map[docRef]bool, u *unit) {
	for _, it := range u.items {
		if it.mapping != nil {
			held[docRef{it.mapping.Collection, it.docKey}] = true
		}
	}
}

// park marks u parked if it touches a held document (and its collection
// parks), holding every document of u from then on.
func (a *Applier) park(held map[docRef]bool, u *unit) bool {
	for _, it := range u.items {
		if it.mapping == nil || it.noop || a.unparked[it.mapping.Collection] {
			continue
		}
		if held[docRef{it.mapping.Collection, it.docKey}] {
			it.reject = &parkedError{coll: it.mapping.Collection, key: it.docKey}
			holdUnit(held, u)
			return true
		}
	}
	return false
}

// Outcomes of an event, for Result.Counts.
const (
	OutcomeApplied      = "applied"
	OutcomeSkipped      = "skipped" // behind the version guard, a duplicate, or superseded in its batch
	OutcomeDeadLettered = "dead_lettered"
	OutcomeParked       = "parked"
	OutcomeWaiting      = "waiting"
)

// Count keys Result.Counts.
type Count struct {
	Collection string
	Op         event.Op
	Outcome    string
}

func (r *Result) count(it *item, outcome string) {
	if r.Counts == nil {
		r.Counts = map[Count]int{}
	}
	coll := it.ev.Source.Coll
	r.Counts[Count{Collection: coll, Op: it.ev.Op, Outcome: outcome}]++
	switch outcome {
	case OutcomeApplied:
		r.Applied++
		if r.ByCollection == nil {
			r.ByCollection = map[string]int{}
		}
		r.ByCollection[coll]++
	case OutcomeSkipped:
		r.Skipped++
	}
}

func (r *Result) merge(o Result) {
	r.Applied += o.Applied
	r.Skipped += o.Skipped
	r.DeadLettered += o.DeadLettered
	if o.RefillError != "" {
		r.RefillError = o.RefillError
	}
	for k, v := range o.ByCollection {
		r.ByCollection[k] += v
	}
	for k, v := range o.Counts {
		if r.Counts == nil {
			r.Counts = map[Count]int{}
		}
		r.Counts[k] += v
	}
	if o.LastClusterTime.Compare(r.LastClusterTime) > 0 {
		r.LastClusterTime = o.LastClusterTime
	}
}

type docRef struct{ coll, key string }

// applyUnits writes units inside tx. Any error leaves tx to be rolled back
// (or rolled back to its savepoint) by the caller.
func (a *Applier) applyUnits(ctx context.Context, tx pgx.Tx, units []*unit, present map[docRef]bool) (Result, error) {
	res := Result{ByCollection: map[string]int{}}
	// Newest effective event per document: the final state of a document
	// within one Postgres transaction depends only on it.
	latest := map[docRef]*item{}
	var order []docRef
	for _, u := range units {
		for _, it := range u.items {
			if it.noop {
				res.count(it, OutcomeSkipped)
				continue
			}
			k := docRef{it.mapping.Collection, it.docKey}
			prev, ok := latest[k]
			if !ok {
				order = append(order, k)
				latest[k] = it
				continue
			}
			if c := it.ev.Position().Compare(prev.ev.Position()); c > 0 || (c == 0 && it.seq > prev.seq) {
				latest[k] = it
				res.count(prev, OutcomeSkipped)
			} else {
				res.count(it, OutcomeSkipped)
			}
		}
	}
	if len(order) == 0 {
		return res, nil
	}

	// Version guard: advance the stored position only where this event is
	// newer; only those documents are written.
	colls := make([]string, len(order))
	keys := make([]string, len(order))
	cts := make([]int64, len(order))
	idx := make([]int32, len(order))
	dels := make([]bool, len(order))
	for i, k := range order {
		it := latest[k]
		p := it.ev.Position()
		colls[i], keys[i], cts[i], idx[i], dels[i] = k.coll, k.key, p.ClusterTime.Pack(), int32(p.TxnIndex), it.ev.Op == event.OpDelete
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO cdc.doc_versions AS v (collection, doc_key, cluster_time, txn_index, deleted)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $5::bool[])
		ON CONFLICT (collection, doc_key) DO UPDATE
		SET cluster_time = EXCLUDED.cluster_time, txn_index = EXCLUDED.txn_index,
		    deleted = EXCLUDED.deleted, updated_at = now()
		WHERE (v.cluster_time, v.txn_index) < (EXCLUDED.cluster_time, EXCLUDED.txn_index)
		RETURNING collection, doc_key`, colls, keys, cts, idx, dels)
	if err != nil {
		return res, fmt.Errorf("version guard: %w", err)
	}
	won := map[docRef]bool{}
	for rows.Next() {
		var k docRef
		if err := rows.Scan(&k.coll, &k.key); err != nil {
			rows.Close()
			return res, fmt.Errorf("version guard: %w", err)
		}
		won[k] = true
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("version guard: %w", err)
	}
	var winners []*item
	for _, k := range order {
		if won[k] {
			winners = append(winners, latest[k])
		} else {
			res.count(latest[k], OutcomeSkipped)
		}
	}
	if len(winners) == 0 {
		return res, nil
	}

	ids, err := resolveIDs(ctx, tx, winners)
	if err != nil {
		return res, err
	}

	batch := &pgx.Batch{}
	if err := a.queueWrites(ctx, tx, batch, winners, ids, present); err != nil {
		return res, err
	}
	if batch.Len() > 0 {
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return res, fmt.Errorf("apply rows: %w", err)
		}
	}
	// A refill that fails must not fail the parents that triggered it: it
	// runs in a savepoint, and its records stay in cdc.dangling_refs
	// (reported by verify) when it is rolled back.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("savepoint: %w", err)
	}
	if rerr := a.refillChildren(ctx, sp, winners, present); rerr != nil {
		if Classify(rerr) != Poison {
			return res, rerr
		}
		if err := sp.Rollback(ctx); err != nil {
			return res, fmt.Errorf("rollback refill: %w", err)
		}
		res.RefillError = rerr.Error()
	} else if err := sp.Commit(ctx); err != nil {
		return res, fmt.Errorf("release savepoint: %w", err)
	}
	for _, it := range winners {
		res.count(it, OutcomeApplied)
		if ct := it.ev.Source.ClusterTime; ct.Compare(res.LastClusterTime) > 0 {
			res.LastClusterTime = ct
		}
	}
	return res, nil
}

func deleteTime(ev *event.Event) time.Time {
	if !ev.Source.WallTime.IsZero() {
		return ev.Source.WallTime
	}
	return ev.Source.ClusterTime.Time()
}

// idSet is the id_map entries a batch needs.
type idSet map[docRef]uuid.UUID

func (s idSet) get(coll, key string) (uuid.UUID, bool) {
	id, ok := s[docRef{coll, key}]
	return id, ok
}

// rowID is the primary-key value of the item's row: its id_map new_id for
// uuid ids (nil when a delete finds none), its key string for text ids.
func (s idSet) rowID(it *item) (any, error) {
	if it.mapping.ID.Type == "text" {
		return it.docKey, nil
	}
	id, ok := s.get(it.mapping.Collection, it.docKey)
	if !ok {
		if it.ev.Op == event.OpDelete {
			return nil, nil
		}
		return nil, fmt.Errorf("id_map has no entry for %s %s after minting", it.mapping.Collection, it.docKey)
	}
	return id, nil
}

// resolveIDs mints id_map entries for the documents being written (and for
// references with the mint policy), honouring mappings that already exist,
// and looks up every other id the winners need, in one round trip.
func resolveIDs(ctx context.Context, tx pgx.Tx, winners []*item) (idSet, error) {
	var mintColl, mintKey, lookColl, lookKey []string
	var mintID []uuid.UUID
	looked, minted := map[docRef]bool{}, map[docRef]bool{}
	add := func(coll, key string, mint bool) {
		k := docRef{coll, key}
		if !looked[k] {
			looked[k] = true
			lookColl, lookKey = append(lookColl, coll), append(lookKey, key)
		}
		// A key first seen as a reference may be minted later in the
		// batch, as the document the batch writes.
		if mint && !minted[k] {
			minted[k] = true
			id, err := uuid.NewV7()
			if err != nil {
				id = uuid.New()
			}
			mintColl, mintKey, mintID = append(mintColl, coll), append(mintKey, key), append(mintID, id)
		}
	}
	for _, it := range winners {
		if it.mapping.ID.Type == "uuid" {
			add(it.mapping.Collection, it.docKey, it.ev.Op != event.OpDelete)
		}
		for _, ref := range refsOf(it) {
			add(ref.Collection, ref.LegacyID, ref.Missing == transform.MissingMint)
		}
	}
	out := idSet{}
	if len(lookColl) == 0 {
		return out, nil
	}
	b := &pgx.Batch{}
	if len(mintColl) > 0 {
		b.Queue(`INSERT INTO id_map (collection, legacy_object_id, new_id)
			SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])
			ON CONFLICT (collection, legacy_object_id) DO NOTHING`, mintColl, mintKey, mintID)
	}
	b.Queue(`SELECT m.collection, m.legacy_object_id, m.new_id
		FROM unnest($1::text[], $2::text[]) AS k(collection, legacy_object_id)
		JOIN id_map m USING (collection, legacy_object_id)`, lookColl, lookKey)
	br := tx.SendBatch(ctx, b)
	if len(mintColl) > 0 {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("id_map mint: %w", err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, fmt.Errorf("id_map lookup: %w", err)
	}
	for rows.Next() {
		var k docRef
		var id uuid.UUID
		if err := rows.Scan(&k.coll, &k.key, &id); err != nil {
			rows.Close()
			br.Close()
			return nil, fmt.Errorf("id_map lookup: %w", err)
		}
		out[k] = id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		br.Close()
		return nil, fmt.Errorf("id_map lookup: %w", err)
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("id_map: %w", err)
	}
	return out, nil
}

// deadLetter records every event of u with the reason.
func (a *Applier) deadLetter(ctx context.Context, tx pgx.Tx, u *unit) error {
	cause := u.rejected()
	for _, it := range u.items {
		err := it.reject
		prefix := ""
		if err == nil {
			err, prefix = cause, "another event of its Mongo transaction was dead-lettered: "
		}
		errClass, reason := classify(err)
		reason = prefix + reason
		field, value := "", ""
		if rej, ok := transform.AsRejection(err); ok {
			field, value = rej.Field, rej.Value
		}
		// Stored as canonical Extended JSON so operators can query it; an
		// envelope that is not even BSON is kept as hex.
		evJSON, jerr := event.ExtJSON(it.raw)
		if jerr != nil {
			evJSON, _ = json.Marshal(map[string]string{"undecodable_hex": hex.EncodeToString(it.raw), "error": jerr.Error()})
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO cdc.dead_letters (event_id, collection, doc_key, stream_seq, error_class, field, value, reason, event)
			VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, ''), $8, $9)
			ON CONFLICT (event_id) DO UPDATE
			SET attempts = cdc.dead_letters.attempts + 1, last_seen = now(), reason = EXCLUDED.reason,
			    error_class = EXCLUDED.error_class, field = EXCLUDED.field, value = EXCLUDED.value, status = 'open'`,
			it.ev.ID, it.ev.Source.Coll, it.docKey, int64(it.seq), errClass, field, value, reason, evJSON); err != nil {
			return fmt.Errorf("dead-letter %s: %w", it.ev.ID, err)
		}
	}
	return nil
}

// SetUnparked lists collections whose documents keep applying after one of
// Raw is one stream message for ApplyRaw.
type Raw struct {
	Seq  uint64
	Data []byte
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
// (dead-letter retries mark their entries there, so the retried events are
// not parked behind themselves and the mark commits with the outcome).
func (a *Applier) ApplyRawWith(ctx context.Context, set *transform.Set, msgs []Raw, before func(pgx.Tx) error) (Result, error) {
	return a.applyPrepared(ctx, Prepare(set, msgs), before)
}

// Prepared is a batch decoded and transformed, ready for ApplyPrepared.
// Preparing (CPU in this process) and applying (mostly Postgres) can
// overlap: prepare batch n+1 while batch n applies.
type Prepared struct {
	units      []*unit
	incomplete int
}

// Prepare decodes msgs (stream order), transforms them and groups the
// events of each Mongo transaction.
func Prepare(set *transform.Set, msgs []Raw) *Prepared {
	asm := newAssembler()
	for _, m := range msgs {
		asm.add(decode(set, m.Seq, m.Data))
	}
	p := &Prepared{units: asm.take()}
	for _, ot := range asm.open {
		p.incomplete += len(ot.items)
	}
	return p
}

// ApplyPrepared applies a prepared batch like ApplyRaw.
func (a *Applier) ApplyPrepared(ctx context.Context, p *Prepared) (Result, error) {
	return a.applyPrepared(ctx, p, nil)
}

func (a *Applier) applyPrepared(ctx context.Context, p *Prepared, before func(pgx.Tx) error) (Result, error) {
	res, err := a.apply(ctx, p.units, Position{}, before)
	res.Incomplete += p.incomplete
	return res, err
}
