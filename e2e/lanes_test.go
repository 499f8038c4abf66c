package e2e

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/state"
)

// laneExtraColls are the collections TestLanesRebalanceProcesses adds to
// the harness's two (widgets, gadgets), so that six lanes of one
// collection each exist. They have the gadgets' shape (gadgetsYAML), so
// mongoRows renders them as it renders gadgets, and laneTableRows reads
// them back from Postgres.
var laneExtraColls = []string{"sprockets", "levers", "valves", "pulleys"}

// laneSpecs is sink.lanes, six lanes: widgets split by document id into
// w_0 and w_1 (the harness updates and deletes its widgets repeatedly, so
// per-document order across a split group is checked by exactness), one
// lane each for gadgets, sprockets and levers, and valves with pulleys;
// a transaction over several collections spans lanes.
var laneSpecs = []string{"w/2:widgets", "g:gadgets", "s:sprockets", "l:levers", "vp:valves+pulleys"}

// laneXTxnColls are the collections of the load's cross-lane marker
// transactions: each inserts one document with the same label
// ("xtxn-<n>") into each, so a Postgres snapshot showing some but not
// all of a label's rows is a transaction applied in parts.
var laneXTxnColls = []string{"gadgets", "levers", "valves", "pulleys"}

// TestLanesRebalanceProcesses (acceptance 4 with real processes): one
// `cdc tail` and three `cdc sink` processes share six lanes (one per
// collection) on one NATS server and one Postgres database, under a load
// of the harness's mixed writes and widgets+gadgets transactions
// (startMixedLoad), writes to four more collections, cross-lane marker
// transactions over four lanes, and one document updated thousands of
// times. A fourth `cdc sink` joins mid-run and the lanes the rendezvous
// hash gives it move to it; then one of the original three, holding at
// least one lane, is killed -9 and its lanes move to the survivors. It
// logs how long each move took (process start or kill -> every lane's
// fence held by the instance the assignment names). At the end Postgres
// equals Mongo exactly (all six collections), the audit trigger shows no
// event applied twice, the hot document's last version won, and no
// Postgres snapshot ever showed a marker transaction in part.
func TestLanesRebalanceProcesses(t *testing.T) {
	start := time.Now()
	e := newEnv(t)
	e.createCollections(laneExtraColls...)
	for _, c := range laneExtraColls {
		y := strings.Replace(strings.Replace(gadgetsYAML, "collection: gadgets", "collection: "+c, 1), "table: gadgets", "table: "+c, 1)
		must(t, os.WriteFile(filepath.Join(e.tdir, c+".yaml"), []byte(y), 0o644))
		_, err := e.pool.Exec(e.ctx, fmt.Sprintf(`CREATE TABLE %s (id uuid PRIMARY KEY, label text, weight numeric(20,6), active boolean, v bigint NOT NULL)`, c))
		must(t, err)
	}
	n := e.startNATS()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	startAt := e.startAt()
	base := e.config(n.url(), "")
	mk := func(name string) string {
		cfg := e.config(n.url(), filepath.Join(e.dir, "data-"+name))
		cfg.Tailer.StartAt = startAt
		cfg.Tailer.Instance = name
		cfg.Sink.Instance = name
		cfg.Sink.Lanes = laneSpecs
		cfg.Log.Level = "info"
		cfg.Log.Format = "json"
		return e.writeConfig(cfg)
	}
	laneCfgs, err := config.ParseLanes(laneSpecs)
	if err != nil {
		t.Fatal(err)
	}
	var lanes []string
	for _, l := range laneCfgs {
		lanes = append(lanes, l.Name)
	}
	if len(lanes) != 6 {
		t.Fatalf("laneSpecs make %d lanes, want six: %q", len(lanes), lanes)
	}

	procs := map[string]*process{} // running, by instance name
	var order []string             // every instance ever started, for dumps
	dump := func() string {
		var b strings.Builder
		for _, name := range order {
			fmt.Fprintf(&b, "--- %s ---\n%s\n", name, procs[name].tail())
		}
		return b.String()
	}
	killed := map[string]bool{}
	alive := func() {
		t.Helper()
		for name, p := range procs {
			if killed[name] {
				continue
			}
			select {
			case <-p.done:
				t.Fatalf("%s exited on its own (code %d):\n%s", name, p.cmd.ProcessState.ExitCode(), dump())
			default:
			}
		}
	}
	launch := func(sub, name string) {
		procs[name] = e.startCommand(sub, mk(name))
		order = append(order, name)
	}
	// owners is each lane's fence holder as its position row records it
	// (state.AcquireFence writes the owner when it takes the fence).
	owners := func() map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, l := range lanes {
			p, ok, err := state.ReadPosition(e.ctx, e.pool, sink.LaneConsumer(base.Sink.Consumer, l))
			must(t, err)
			if ok {
				out[l] = p.Owner
			}
		}
		return out
	}
	// settled waits until every lane's fence is held by the instance the
	// rendezvous assignment over members names, and says how long it took.
	settled := func(what string, members []string, d time.Duration) time.Duration {
		t.Helper()
		want := laneAssignment(lanes, members)
		t0 := time.Now()
		for {
			alive()
			got := owners()
			if fmt.Sprint(got) == fmt.Sprint(want) {
				return time.Since(t0)
			}
			if time.Since(t0) > d {
				t.Fatalf("%s: lanes not held as assigned within %s: want %v, got %v\n%s", what, d, want, got, dump())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// progressed waits until every lane of moved has applied past where
	// its position was when the move completed (the new holder applies
	// under the load), and says how long that took.
	progressed := func(what string, moved []string, d time.Duration) time.Duration {
		t.Helper()
		seq := func(l string) state.Position {
			p, _, err := state.ReadPosition(e.ctx, e.pool, sink.LaneConsumer(base.Sink.Consumer, l))
			must(t, err)
			return p
		}
		at := map[string]uint64{}
		for _, l := range moved {
			at[l] = seq(l).Seq
		}
		t0 := time.Now()
		for _, l := range moved {
			for seq(l).Seq <= at[l] {
				alive()
				if time.Since(t0) > d {
					t.Fatalf("%s: lane %s held by %s has not applied past seq %d within %s\n%s", what, l, seq(l).Owner, at[l], d, dump())
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		return time.Since(t0)
	}
	movedLanes := func(before, after map[string]string) []string {
		var out []string
		for _, l := range lanes {
			if before[l] != after[l] {
				out = append(out, l)
			}
		}
		return out
	}

	launch("tail", "tail")
	first := []string{"sink-a", "sink-b", "sink-c"}
	for _, name := range first {
		launch("sink", name)
	}
	took := settled("three sinks", first, 45*time.Second)
	t.Logf("three sinks: lanes %v held after %s", laneAssignment(lanes, first), took.Round(time.Millisecond))

	// The load.
	stopMixed := startMixedLoad(e, seed)
	defer stopMixed()
	stopExtra := startLaneLoad(e, seed^0x5bd1e995)
	defer stopExtra()
	loadStart := time.Now()
	// The watcher of the marker transactions' atomicity.
	wctx, stopWatch := context.WithCancel(e.ctx)
	defer stopWatch()
	var partial atomic.Value // first partial snapshot seen ("": none)
	partial.Store("")
	var watchWG sync.WaitGroup
	var snapshots atomic.Int64
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		for wctx.Err() == nil {
			bad, err := laneXTxnPartial(wctx, e)
			if err == nil {
				snapshots.Add(1)
				if bad != "" && partial.Load() == "" {
					partial.Store(bad)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	waitLoad := func(d time.Duration) {
		t.Helper()
		t0 := time.Now()
		for time.Since(t0) < d {
			alive()
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitLoad(4 * time.Second)

	// A fourth instance joins: a name to which the assignment gives at
	// least one lane, so that lanes must move.
	joiner := ""
	for i := 0; joiner == ""; i++ {
		cand := fmt.Sprintf("sink-d%d", i)
		for _, h := range laneAssignment(lanes, append(slices.Clone(first), cand)) {
			if h == cand {
				joiner = cand
			}
		}
	}
	four := append(slices.Clone(first), joiner)
	launch("sink", joiner)
	joinMove := settled(joiner+" joins", four, 30*time.Second)
	t.Logf("join at %s: %s started; lanes moved to %v after %s (from its process start)",
		time.Since(loadStart).Round(time.Millisecond), joiner, laneAssignment(lanes, four), joinMove.Round(time.Millisecond))

	moved := movedLanes(laneAssignment(lanes, first), laneAssignment(lanes, four))
	t.Logf("join: moved lanes %v apply under their new holder after %s more",
		moved, progressed(joiner+" joins", moved, 20*time.Second).Round(time.Millisecond))

	waitLoad(3 * time.Second)

	// Kill -9 the original instance holding the most lanes.
	victim, most := "", 0
	counts := map[string]int{}
	for _, h := range laneAssignment(lanes, four) {
		counts[h]++
	}
	for _, name := range first {
		if counts[name] > most {
			victim, most = name, counts[name]
		}
	}
	if victim == "" {
		t.Fatalf("none of %v holds a lane in %v", first, laneAssignment(lanes, four))
	}
	var rest []string
	for _, name := range four {
		if name != victim {
			rest = append(rest, name)
		}
	}
	killed[victim] = true
	procs[victim].kill()
	killMove := settled("kill -9 of "+victim, rest, 40*time.Second)
	t.Logf("kill -9 at %s: %s (%d lanes) killed; lanes moved to %v after %s (membership TTL %s = %d heartbeats of %s)",
		time.Since(loadStart).Round(time.Millisecond), victim, most, laneAssignment(lanes, rest), killMove.Round(time.Millisecond),
		sink.MemberTTLFactor*sink.DefaultHeartbeat, sink.MemberTTLFactor, sink.DefaultHeartbeat)

	moved = movedLanes(laneAssignment(lanes, four), laneAssignment(lanes, rest))
	t.Logf("kill: moved lanes %v apply under their new holders after %s more",
		moved, progressed("kill -9 of "+victim, moved, 20*time.Second).Round(time.Millisecond))

	waitLoad(2 * time.Second)
	alive()
	mr := stopMixed()
	must(t, mr.err)
	xr := stopExtra()
	must(t, xr.err)
	t.Logf("load over %s: mixed %d operations, %d widgets+gadgets transactions; extra %d operations, %d cross-lane transactions; hot document %d updates",
		time.Since(loadStart).Round(time.Millisecond), mr.ops, mr.txns, xr.ops, xr.txns, xr.hotUpdates)
	if mr.txns == 0 || xr.txns == 0 || xr.hotUpdates < 1000 {
		t.Fatalf("load too small to mean anything: %d + %d transactions, %d hot updates", mr.txns, xr.txns, xr.hotUpdates)
	}

	applied := e.count(e.ctx, `SELECT count(DISTINCT label) FROM levers WHERE label LIKE 'xtxn-%'`)
	caught := time.Now()
	e.waitExact(time.Minute)
	t.Logf("at the load's end %d of %d cross-lane transactions were applied; Postgres equal to Mongo %s later",
		applied, xr.txns, time.Since(caught).Round(time.Millisecond))
	if diff := laneCompareExtra(e); diff != "" {
		t.Fatalf("extra collections differ from Mongo:\n%s", diff)
	}
	stopWatch()
	watchWG.Wait()
	if p := partial.Load().(string); p != "" {
		t.Fatalf("a cross-lane transaction was visible in part: %s", p)
	}
	if bad, err := laneXTxnPartial(e.ctx, e); err != nil || bad != "" {
		t.Fatalf("cross-lane transactions at the end: %q, %v", bad, err)
	}
	if got := e.count(e.ctx, `SELECT count(DISTINCT label) FROM levers WHERE label LIKE 'xtxn-%'`); got != xr.txns {
		t.Fatalf("%d cross-lane transactions in Postgres, want %d", got, xr.txns)
	}
	// The hot document's last version won.
	var v int64
	var label string
	must(t, e.pool.QueryRow(e.ctx, `SELECT s.v, s.label FROM sprockets s JOIN id_map m ON m.new_id = s.id AND m.collection = 'sprockets'
		WHERE m.legacy_object_id = $1`, xr.hot.Hex()).Scan(&v, &label))
	if v != int64(xr.hotUpdates) || label != fmt.Sprintf("hot-%d", xr.hotUpdates) {
		t.Fatalf("hot document in Postgres v=%d label=%q, want v=%d label=hot-%d", v, label, xr.hotUpdates, xr.hotUpdates)
	}
	e.assertNoDoubleApply()
	t.Logf("atomicity: %d Postgres snapshots checked during the run, none partial", snapshots.Load())

	for _, name := range order {
		if killed[name] {
			continue
		}
		if code := procs[name].terminate(); code != 0 {
			t.Fatalf("%s: graceful stop exited %d:\n%s", name, code, procs[name].tail())
		}
	}
	// What went wrong on the way, for the next engineer (not a failure:
	// the killed instance's lanes' standbys log while they wait).
	for _, name := range order {
		seen := map[string]int{}
		for _, l := range logLines(procs[name].out.String()) {
			if lv, _ := l.fields["level"].(string); lv == "warn" || lv == "error" {
				seen[lv+": "+l.msg]++
			}
		}
		if len(seen) > 0 {
			t.Logf("%s warnings and errors: %v", name, seen)
		}
	}
	t.Logf("lanes moved after the join in %s, after the kill -9 in %s; wall time %s",
		joinMove.Round(time.Millisecond), killMove.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// laneAssignment is sink.Assign over members named by their sink.instance,
// as instance names: the runner's member key is the owner hex-encoded
// (pkg/sink/members.go memberKey).
func laneAssignment(lanes, members []string) map[string]string {
	keys := make([]string, len(members))
	byKey := map[string]string{}
	for i, m := range members {
		keys[i] = hex.EncodeToString([]byte(m))
		byKey[keys[i]] = m
	}
	sort.Strings(keys)
	out := map[string]string{}
	for l, k := range sink.Assign(lanes, keys) {
		out[l] = byKey[k]
	}
	return out
}

// laneLoadResult is what startLaneLoad's load did.
type laneLoadResult struct {
	ops, txns, hotUpdates int
	hot                   bson.ObjectID
	err                   error
}

// startLaneLoad writes to the extra collections (inserts, updates,
// deletes of gadget-shaped documents), every 25th step a cross-lane
// marker transaction (one insert into each of laneXTxnColls, label
// "xtxn-<n>"), and in a goroutine of its own updates one sprockets
// document as fast as it can (v = its update count, label "hot-<v>"),
// until stop.
func startLaneLoad(e *env, seed uint64) (stop func() laneLoadResult) {
	ctx, cancel := context.WithCancel(e.ctx)
	db := e.client.Database(e.dbName)
	var r laneLoadResult
	var hotErr error
	var hotStop atomic.Bool
	r.hot = bson.NewObjectID()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the hot document
		defer wg.Done()
		l := newLoad(e, seed^1)
		c := db.Collection("sprockets")
		if _, err := retryWrite(e.ctx, func() (any, error) {
			return c.InsertOne(e.ctx, mcSet(l.doc("gadgets", r.hot, 0), "label", "hot-0"))
		}); err != nil {
			hotErr = fmt.Errorf("hot insert: %w", err)
			return
		}
		// Updates run on e.ctx and stop between two updates, so that the
		// count is exact: an update cancelled in flight may still have
		// been applied by the server.
		for !hotStop.Load() {
			i := r.hotUpdates + 1
			if _, err := retryWrite(e.ctx, func() (any, error) {
				return c.UpdateByID(e.ctx, r.hot, bson.D{{Key: "$set", Value: bson.D{{Key: "label", Value: fmt.Sprintf("hot-%d", i)},
					{Key: "active", Value: i%2 == 0}}}, {Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}})
			}); err != nil {
				hotErr = fmt.Errorf("hot update %d: %w", i, err)
				return
			}
			r.hotUpdates = i
		}
	}()
	go func() { // the other writes and the cross-lane transactions
		defer wg.Done()
		l := newLoad(e, seed)
		for ctx.Err() == nil {
			var err error
			if r.ops%25 == 24 {
				err = laneXTxn(ctx, e, l, r.txns)
				if err == nil {
					r.txns++
				}
			} else {
				err = laneStep(ctx, e, l)
			}
			if err != nil {
				if ctx.Err() == nil {
					r.err = fmt.Errorf("extra op %d: %w", r.ops, err)
				}
				return
			}
			r.ops++
		}
	}()
	var once sync.Once
	return func() laneLoadResult {
		once.Do(func() {
			hotStop.Store(true)
			cancel()
			wg.Wait()
			if r.err == nil {
				r.err = hotErr
			}
		})
		return r
	}
}

// laneStep is one insert, $set/$inc update or delete of a gadget-shaped
// document in a random extra collection (l.live tracks their ids; the
// marker transactions' documents are never in it).
func laneStep(ctx context.Context, e *env, l *load) error {
	coll := laneExtraColls[l.rng.IntN(len(laneExtraColls))]
	c := e.client.Database(e.dbName).Collection(coll)
	ids := l.live[coll]
	r := l.rng.IntN(100)
	switch {
	case r < 45 || len(ids) < 5:
		id := bson.NewObjectID()
		if _, err := retryWrite(ctx, func() (any, error) { return c.InsertOne(ctx, l.doc("gadgets", id, 1)) }); err != nil {
			return err
		}
		l.live[coll] = append(ids, id)
	case r < 85:
		id := ids[l.rng.IntN(len(ids))]
		set := bson.D{{Key: "specs.weight", Value: l.decimal6()}, {Key: "active", Value: l.rng.IntN(2) == 0}}
		_, err := retryWrite(ctx, func() (any, error) {
			return c.UpdateByID(ctx, id, bson.D{{Key: "$set", Value: set}, {Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}})
		})
		return err
	default:
		i := l.rng.IntN(len(ids))
		id := ids[i]
		if _, err := retryWrite(ctx, func() (any, error) { return c.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}) }); err != nil {
			return err
		}
		ids[i] = ids[len(ids)-1]
		l.live[coll] = ids[:len(ids)-1]
	}
	return nil
}

// laneXTxn is marker transaction n: one insert labelled "xtxn-<n>" into
// each of laneXTxnColls (four lanes), committed together.
func laneXTxn(ctx context.Context, e *env, l *load, n int) error {
	db := e.client.Database(e.dbName)
	docs := make([]bson.D, len(laneXTxnColls))
	for i := range docs {
		docs[i] = mcSet(l.doc("gadgets", bson.NewObjectID(), 1), "label", fmt.Sprintf("xtxn-%d", n))
	}
	sess, err := e.client.StartSession()
	if err != nil {
		return err
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		for i, coll := range laneXTxnColls {
			if _, err := db.Collection(coll).InsertOne(sc, docs[i]); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	return err
}

// laneXTxnPartial reads, in one statement (one snapshot under READ
// COMMITTED), every marker transaction's rows, and describes the first
// whose rows are not all there ("": none).
func laneXTxnPartial(ctx context.Context, e *env) (string, error) {
	var parts []string
	for _, c := range laneXTxnColls {
		parts = append(parts, fmt.Sprintf(`SELECT label, '%s' AS coll FROM %s WHERE label LIKE 'xtxn-%%'`, c, c))
	}
	q := `SELECT label, string_agg(coll, ',' ORDER BY coll) FROM (` + strings.Join(parts, " UNION ALL ") +
		fmt.Sprintf(`) x GROUP BY label HAVING count(*) <> %d ORDER BY label LIMIT 1`, len(laneXTxnColls))
	var label, colls string
	err := e.pool.QueryRow(ctx, q).Scan(&label, &colls)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil
		}
		return "", err
	}
	return fmt.Sprintf("%s present only in %s", label, colls), nil
}

// laneCompareExtra is compare for the extra collections: "" when Postgres
// holds exactly their Mongo state.
func laneCompareExtra(e *env) string {
	var diffs []string
	for _, coll := range laneExtraColls {
		want, err := e.mongoRows(e.ctx, coll)
		must(e.t, err)
		got, err := laneTableRows(e, coll)
		must(e.t, err)
		for id, w := range want {
			if g, ok := got[id]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s %s: missing in Postgres", coll, id))
			} else if g != w {
				diffs = append(diffs, fmt.Sprintf("%s %s:\n  mongo %s\n  pg    %s", coll, id, w, g))
			}
		}
		for id := range got {
			if _, ok := want[id]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s %s: in Postgres but not in Mongo", coll, id))
			}
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("... and %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "\n")
}

// laneTableRows is pgRows for a gadget-shaped table named as its
// collection.
func laneTableRows(e *env, coll string) (map[string]string, error) {
	rows, err := e.pool.Query(e.ctx, fmt.Sprintf(`SELECT m.legacy_object_id, g.label, g.weight::text, g.active, g.v
		FROM %s g LEFT JOIN id_map m ON m.new_id = g.id AND m.collection = $1`, coll), coll)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id *string
		var label, weight string
		var active bool
		var v int64
		if err := rows.Scan(&id, &label, &weight, &active, &v); err != nil {
			return nil, err
		}
		if id == nil {
			return nil, fmt.Errorf("%s row without id_map entry", coll)
		}
		d, err := decimal.NewFromString(weight)
		if err != nil {
			return nil, err
		}
		out[*id] = fmt.Sprintf("label=%q weight=%s active=%t v=%d", label, d.String(), active, v)
	}
	return out, rows.Err()
}
