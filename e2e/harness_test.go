// Package e2e runs the whole replicator (MongoDB -> tailer -> JetStream ->
// sink -> PostgreSQL) against real services: PostgreSQL started from the
// machine's binaries (pkg/pgtest), the real nats-server embedded, and
// MongoDB either the wire-protocol test server (pkg/mongotest) or, when
// CDC_TEST_MONGO_URI is set, a real replica set. Nothing here skips: a
// service that cannot be reached fails the test.
package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/transform"
)

// cdcBinary is the replicator built once per test run, for the tests that
// kill the process.
var cdcBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cdc-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	cdcBinary = filepath.Join(dir, "cdc")
	build := exec.Command("go", "build", "-o", cdcBinary, "../cmd/cdc")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: building cdc:", err)
		os.Exit(1)
	}
	// Benchmarks measure with fsync on, as production runs; tests do not
	// need it.
	flag.Parse()
	bench := flag.Lookup("test.bench")
	fsync := bench != nil && bench.Value.String() != ""
	code := pgtest.Main(m, pgtest.Options{Managed: true, Fsync: fsync})
	os.RemoveAll(dir)
	os.Exit(code)
}

// Test collections and their mappings: every column type the skeleton
// needs, and a uuid id minted through id_map.
const widgetsYAML = `version: 1
collection: widgets
table: widgets
id: {column: id, type: uuid}
columns:
  - {column: name, field: name, type: text, required: true}
  - {column: qty, field: qty, type: bigint}
  - {column: price, field: price, type: "numeric(38,18)"}
  - {column: tags, field: tags, type: "text[]"}
  - {column: meta, field: meta, type: jsonb}
  - {column: v, field: v, type: bigint, required: true}
  - {column: updated_at, field: updatedAt, type: timestamptz}
`

const gadgetsYAML = `version: 1
collection: gadgets
table: gadgets
id: {column: id, type: uuid}
columns:
  - {column: label, field: label, type: text}
  - {column: weight, field: specs.weight, type: "numeric(20,6)"}
  - {column: active, field: active, type: bool}
  - {column: v, field: v, type: bigint, required: true}
`

const testTablesSQL = `
CREATE TABLE widgets (id uuid PRIMARY KEY, name text NOT NULL, qty bigint, price numeric(38,18),
  tags text[], meta jsonb, v bigint NOT NULL, updated_at timestamptz);
CREATE TABLE gadgets (id uuid PRIMARY KEY, label text, weight numeric(20,6), active boolean, v bigint NOT NULL);
-- Every advance of the version guard, to prove no event is applied twice.
CREATE TABLE cdc.test_apply_audit (collection text, doc_key text, cluster_time bigint, txn_index int);
CREATE FUNCTION cdc.test_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO cdc.test_apply_audit VALUES (NEW.collection, NEW.doc_key, NEW.cluster_time, NEW.txn_index);
  RETURN NEW;
END $$;
CREATE TRIGGER test_audit AFTER INSERT OR UPDATE ON cdc.doc_versions FOR EACH ROW EXECUTE FUNCTION cdc.test_audit();
`

var testCollections = []string{"gadgets", "widgets"}

// env is one test's world.
type env struct {
	t      testing.TB
	ctx    context.Context
	log    *zap.Logger
	srv    *mongotest.Server // nil against a real replica set
	uri    string
	dbName string
	client *mongo.Client
	pgURL  string
	pool   *pgxpool.Pool
	tdir   string // transforms
	dir    string // scratch
	nats   *testNATS
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := newBaseEnv(t, "cdc_e2e", testCollections)
	if _, err := e.pool.Exec(e.ctx, testTablesSQL); err != nil {
		t.Fatalf("test tables: %v", err)
	}
	e.tdir = filepath.Join(e.dir, "transforms")
	must(t, os.MkdirAll(e.tdir, 0o755))
	must(t, os.WriteFile(filepath.Join(e.tdir, "widgets.yaml"), []byte(widgetsYAML), 0o644))
	must(t, os.WriteFile(filepath.Join(e.tdir, "gadgets.yaml"), []byte(gadgetsYAML), 0o644))
	return e
}

// newBaseEnv connects a fresh Mongo database named after prefix (the
// wire test server, or CDC_TEST_MONGO_URI) with collections created, and a
// fresh, fully migrated Postgres database.
func newBaseEnv(t testing.TB, prefix string, collections []string) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), dir: t.TempDir()}
	e.dbName = fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano()%1e9, rand.IntN(1e6))
	if uri := os.Getenv("CDC_TEST_MONGO_URI"); uri != "" {
		e.uri = uri
	} else {
		e.srv = mongotest.Start(t)
		e.uri = e.srv.URI()
	}
	client, err := mongo.Connect(options.Client().ApplyURI(e.uri))
	if err != nil {
		t.Fatalf("mongo connect %s: %v", e.uri, err)
	}
	if err := client.Ping(ctx, nil); err != nil {
		t.Fatalf("mongo unreachable at %s: %v", e.uri, err)
	}
	e.client = client
	t.Cleanup(func() {
		_ = client.Database(e.dbName).Drop(context.Background())
		_ = client.Disconnect(context.Background())
	})
	// Collections must exist on a real server for transactions.
	e.createCollections(collections...)
	e.pgURL = pgtest.NewDatabase(t)
	if _, err := migrate.Up(ctx, e.pgURL, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(ctx, e.pgURL)
	if err != nil {
		t.Fatalf("pg pool: %v", err)
	}
	t.Cleanup(pool.Close)
	e.pool = pool
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// config is the replicator configuration for this env; natsURL "" runs the
// embedded server under dataDir.
func (e *env) config(natsURL, dataDir string) config.Config {
	cfg := config.Default()
	cfg.Mongo.URI = e.uri
	cfg.Mongo.Database = e.dbName
	cfg.Postgres.URL = e.pgURL
	cfg.NATS.URL = natsURL
	cfg.NATS.Embedded.Port = -1
	cfg.DataDir = dataDir
	cfg.Transforms.Dir = e.tdir
	cfg.Tailer.CheckpointInterval = 100 * time.Millisecond
	cfg.Tailer.MaxAwait = 200 * time.Millisecond
	cfg.Sink.BatchWait = 10 * time.Millisecond
	cfg.Sink.AckWait = 30 * time.Second
	cfg.HTTP.Addr = ""
	cfg.Log.Level = "warn"
	return cfg
}

// testNATS is an embedded server the test can restart on the same port and
// store, to simulate an outage.
type testNATS struct {
	t    testing.TB
	port int
	dir  string
	// maxPayload is the server's max_payload (0: the embedded default).
	maxPayload int32
	mu         sync.Mutex
	srv        *bus.Embedded
}

func (e *env) startNATS() *testNATS { return e.startNATSMaxPayload(0) }

// startNATSMaxPayload is startNATS with the server's max_payload set
// (0: the embedded default).
func (e *env) startNATSMaxPayload(maxPayload int32) *testNATS {
	e.t.Helper()
	n := &testNATS{t: e.t, port: freePort(e.t), dir: filepath.Join(e.dir, "nats"), maxPayload: maxPayload}
	n.start()
	e.t.Cleanup(n.stop)
	e.nats = n
	return n
}

func (n *testNATS) start() {
	n.t.Helper()
	srv, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: n.port, StoreDir: n.dir, MaxPayload: n.maxPayload}, nil)
	if err != nil {
		n.t.Fatalf("start nats: %v", err)
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
}

func (n *testNATS) stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}

func (n *testNATS) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runApp runs the replicator in-process until the returned stop is called;
// stop returns app.Run's error.
func (e *env) runApp(cfg config.Config, opts app.Options) (stop func() error) {
	return e.runAppRole(cfg, config.RoleAll, opts)
}

// runAppRole is runApp for the parts of role only (config.RoleSink: a
// sink instance).
func (e *env) runAppRole(cfg config.Config, role config.Role, opts app.Options) (stop func() error) {
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, role, e.log, opts) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				err = fmt.Errorf("replicator did not stop within 60s")
			}
		})
		return err
	}
	e.t.Cleanup(func() { _ = stop() })
	return stop
}

// dropMongoConnections drops every client connection: the test server does
// it directly; a real replica set through the failCommand fail point
// (mongod needs --setParameter enableTestCommands=1).
func (e *env) dropMongoConnections() {
	e.t.Helper()
	if e.srv != nil {
		e.srv.DropConnections()
		return
	}
	err := e.client.Database("admin").RunCommand(e.ctx, bson.D{
		{Key: "configureFailPoint", Value: "failCommand"},
		{Key: "mode", Value: bson.D{{Key: "times", Value: 3}}},
		{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"getMore", "aggregate"}}, {Key: "closeConnection", Value: true}}},
	}).Err()
	if err != nil {
		e.t.Fatalf("configureFailPoint (start mongod with --setParameter enableTestCommands=1): %v", err)
	}
}

// load drives a mixed workload through the driver: inserts, $set/$inc
// updates, replacements and deletes over both collections. It returns
// when n operations are done or ctx ends.
type load struct {
	e    *env
	rng  *rand.Rand
	live map[string][]bson.ObjectID
	ops  int
}

func newLoad(e *env, seed uint64) *load {
	return &load{e: e, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), live: map[string][]bson.ObjectID{}}
}

func (l *load) run(ctx context.Context, n int) error {
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := l.step(ctx); err != nil {
			return fmt.Errorf("op %d: %w", l.ops, err)
		}
	}
	return nil
}

func (l *load) step(ctx context.Context) error {
	coll := testCollections[l.rng.IntN(len(testCollections))]
	c := l.e.client.Database(l.e.dbName).Collection(coll)
	ids := l.live[coll]
	r := l.rng.IntN(100)
	l.ops++
	switch {
	case r < 40 || len(ids) < 5:
		id := bson.NewObjectID()
		if _, err := retryWrite(ctx, func() (any, error) { return c.InsertOne(ctx, l.doc(coll, id, 1)) }); err != nil {
			return err
		}
		l.live[coll] = append(ids, id)
	case r < 65:
		id := ids[l.rng.IntN(len(ids))]
		set := bson.D{}
		if coll == "widgets" {
			set = append(set, bson.E{Key: "qty", Value: l.rng.Int64N(1000)}, bson.E{Key: "price", Value: l.decimal()},
				bson.E{Key: "updatedAt", Value: bson.NewDateTimeFromTime(time.Now())})
		} else {
			set = append(set, bson.E{Key: "specs.weight", Value: l.decimal6()}, bson.E{Key: "active", Value: l.rng.IntN(2) == 0})
		}
		if _, err := retryWrite(ctx, func() (any, error) {
			return c.UpdateByID(ctx, id, bson.D{{Key: "$set", Value: set}, {Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}})
		}); err != nil {
			return err
		}
	case r < 85:
		id := ids[l.rng.IntN(len(ids))]
		var cur bson.M
		if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&cur); err != nil {
			return fmt.Errorf("find %s: %w", id.Hex(), err)
		}
		v := toInt64(cur["v"]) + 1
		if _, err := retryWrite(ctx, func() (any, error) { return c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, l.doc(coll, id, v)) }); err != nil {
			return err
		}
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

// retryWrite retries a write through dropped connections (the driver's
// retryable writes cover one retry; a test outage may need more). Writes
// here are idempotent by _id or by their effect on v being checked only
// at the end against Mongo itself.
func retryWrite(ctx context.Context, f func() (any, error)) (any, error) {
	var err error
	for i := 0; i < 20; i++ {
		var r any
		if r, err = f(); err == nil {
			return r, nil
		}
		if mongo.IsDuplicateKeyError(err) {
			return nil, nil // the first attempt landed before the connection dropped
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, err
}

func (l *load) doc(coll string, id bson.ObjectID, v int64) bson.D {
	if coll == "widgets" {
		return bson.D{
			{Key: "_id", Value: id},
			{Key: "name", Value: fmt.Sprintf("widget %s ✓ \"quoted\" \t tab", id.Hex()[18:])},
			{Key: "qty", Value: l.rng.Int64N(1 << 40)},
			{Key: "price", Value: l.decimal()},
			{Key: "tags", Value: bson.A{"a", fmt.Sprintf("t%d", l.rng.IntN(10)), "ünï"}},
			{Key: "meta", Value: bson.D{{Key: "source", Value: "e2e"}, {Key: "n", Value: l.rng.IntN(100)}, {Key: "amount", Value: l.decimal()}}},
			{Key: "v", Value: v},
			{Key: "updatedAt", Value: bson.NewDateTimeFromTime(time.Now())},
		}
	}
	return bson.D{
		{Key: "_id", Value: id},
		{Key: "label", Value: fmt.Sprintf("gadget-%d", l.rng.IntN(1e6))},
		{Key: "specs", Value: bson.D{{Key: "weight", Value: l.decimal6()}}},
		{Key: "active", Value: l.rng.IntN(2) == 0},
		{Key: "v", Value: v},
	}
}

// decimal is a Decimal128 with up to 18 fractional digits: exact money.
func (l *load) decimal() bson.Decimal128 {
	s := fmt.Sprintf("%d.%018d", l.rng.Int64N(1e12), l.rng.Int64N(1e18))
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		panic(err)
	}
	return d
}

func (l *load) decimal6() bson.Decimal128 {
	d, err := bson.ParseDecimal128(fmt.Sprintf("%d.%06d", l.rng.Int64N(1e9), l.rng.Int64N(1e6)))
	if err != nil {
		panic(err)
	}
	return d
}

func toInt64(v any) int64 {
	switch n := v.(type) {
	case int32:
		return int64(n)
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}

// compare returns "" when Postgres holds exactly the Mongo state of the
// test collections, else a description of the first differences.
func (e *env) compare(ctx context.Context) (string, error) {
	var diffs []string
	for _, coll := range testCollections {
		want, err := e.mongoRows(ctx, coll)
		if err != nil {
			return "", err
		}
		got, err := e.pgRows(ctx, coll)
		if err != nil {
			return "", err
		}
		for id, w := range want {
			g, ok := got[id]
			if !ok {
				diffs = append(diffs, fmt.Sprintf("%s %s: missing in Postgres", coll, id))
				continue
			}
			if w != g {
				diffs = append(diffs, fmt.Sprintf("%s %s:\n  mongo %s\n  pg    %s", coll, id, w, g))
			}
		}
		for id := range got {
			if _, ok := want[id]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s %s: in Postgres but not in Mongo", coll, id))
			}
		}
		if len(want) == 0 && len(got) == 0 {
			continue
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("... and %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "\n"), nil
}

// mongoRows renders each document as the row the mapping must produce.
func (e *env) mongoRows(ctx context.Context, coll string) (map[string]string, error) {
	cur, err := e.client.Database(e.dbName).Collection(coll).Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("mongo find %s: %w", coll, err)
	}
	defer cur.Close(ctx)
	out := map[string]string{}
	for cur.Next(ctx) {
		raw := cur.Current
		id := raw.Lookup("_id").ObjectID().Hex()
		if coll == "widgets" {
			price, _, err := transform.ToDecimal(raw.Lookup("price"), transform.DecimalSpec{Precision: 38, Scale: 18})
			if err != nil {
				return nil, err
			}
			tags, _ := raw.Lookup("tags").Array().Values()
			ts := make([]string, len(tags))
			for i, t := range tags {
				ts[i] = t.StringValue()
			}
			out[id] = fmt.Sprintf("name=%q qty=%d price=%s tags=%q v=%d updated=%d",
				raw.Lookup("name").StringValue(), raw.Lookup("qty").AsInt64(), price.String(), ts,
				raw.Lookup("v").AsInt64(), raw.Lookup("updatedAt").DateTime())
		} else {
			w, _, err := transform.ToDecimal(raw.Lookup("specs", "weight"), transform.DecimalSpec{Precision: 20, Scale: 6})
			if err != nil {
				return nil, err
			}
			out[id] = fmt.Sprintf("label=%q weight=%s active=%t v=%d",
				raw.Lookup("label").StringValue(), w.String(), raw.Lookup("active").Boolean(), raw.Lookup("v").AsInt64())
		}
	}
	return out, cur.Err()
}

func (e *env) pgRows(ctx context.Context, coll string) (map[string]string, error) {
	out := map[string]string{}
	if coll == "widgets" {
		rows, err := e.pool.Query(ctx, `SELECT m.legacy_object_id, w.name, w.qty, w.price::text, w.tags, w.v,
			(extract(epoch from w.updated_at) * 1000)::bigint
			FROM widgets w LEFT JOIN id_map m ON m.new_id = w.id AND m.collection = 'widgets'`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var id *string
			var name, price string
			var qty, v, updated int64
			var tags []string
			if err := rows.Scan(&id, &name, &qty, &price, &tags, &v, &updated); err != nil {
				return nil, err
			}
			if id == nil {
				return nil, fmt.Errorf("widgets row without id_map entry")
			}
			d, err := decimal.NewFromString(price)
			if err != nil {
				return nil, err
			}
			out[*id] = fmt.Sprintf("name=%q qty=%d price=%s tags=%q v=%d updated=%d", name, qty, d.String(), tags, v, updated)
		}
		return out, rows.Err()
	}
	rows, err := e.pool.Query(ctx, `SELECT m.legacy_object_id, g.label, g.weight::text, g.active, g.v
		FROM gadgets g LEFT JOIN id_map m ON m.new_id = g.id AND m.collection = 'gadgets'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id *string
		var label, weight string
		var active bool
		var v int64
		if err := rows.Scan(&id, &label, &weight, &active, &v); err != nil {
			return nil, err
		}
		if id == nil {
			return nil, fmt.Errorf("gadgets row without id_map entry")
		}
		d, err := decimal.NewFromString(weight)
		if err != nil {
			return nil, err
		}
		out[*id] = fmt.Sprintf("label=%q weight=%s active=%t v=%d", label, d.String(), active, v)
	}
	return out, rows.Err()
}

// waitExact polls until Postgres equals Mongo, failing after timeout with
// the last difference.
func (e *env) waitExact(timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		diff, err := e.compare(e.ctx)
		if err == nil && diff == "" {
			return
		}
		if err != nil {
			last = fmt.Sprintf("comparison failed: %T: %v", err, err)
		} else {
			last = diff
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("Postgres did not converge to the Mongo state within %s:\n%s", timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// assertNoDoubleApply fails if any event position was applied twice.
func (e *env) assertNoDoubleApply() {
	e.t.Helper()
	var dups int
	err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM (SELECT 1 FROM cdc.test_apply_audit
		GROUP BY collection, doc_key, cluster_time, txn_index HAVING count(*) > 1) d`).Scan(&dups)
	must(e.t, err)
	if dups != 0 {
		e.t.Fatalf("%d events were applied more than once", dups)
	}
	var dl int
	must(e.t, e.pool.QueryRow(e.ctx, `SELECT count(*) FROM cdc.dead_letters`).Scan(&dl))
	if dl != 0 {
		e.t.Fatalf("%d unexpected dead letters", dl)
	}
}

func (e *env) count(ctx context.Context, sql string) int {
	e.t.Helper()
	var n int
	must(e.t, e.pool.QueryRow(ctx, sql).Scan(&n))
	return n
}

var _ = runtime.NumCPU

// createCollections creates the collections (of e's database) with
// changeStreamPreAndPostImages enabled, as a user following the README
// does for tailer.full_document post_image; a collection that already
// exists (NamespaceExists, 48) gets it with collMod.
func (e *env) createCollections(names ...string) {
	e.t.Helper()
	db := e.client.Database(e.dbName)
	for _, c := range names {
		err := db.CreateCollection(e.ctx, c, options.CreateCollection().SetChangeStreamPreAndPostImages(bson.M{"enabled": true}))
		var ce mongo.CommandError
		if errors.As(err, &ce) && ce.HasErrorCode(48) {
			err = db.RunCommand(e.ctx, bson.D{{Key: "collMod", Value: c},
				{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}}).Err()
		}
		if err != nil {
			e.t.Fatalf("create collection %s with pre- and post-images: %v", c, err)
		}
	}
}

// pacedLoad is a load run at a fixed rate by startPacedLoad.
type pacedLoad struct {
	// ops counts the operations done so far; start is when it began.
	ops   atomic.Int64
	start time.Time
	// done receives nil once ctx ends, or the load's first error.
	done chan error
}

// startPacedLoad runs l at perSecond operations per second, in 10 ms
// steps, until ctx ends.
func startPacedLoad(ctx context.Context, l *load, perSecond int) *pacedLoad {
	pl := &pacedLoad{start: time.Now(), done: make(chan error, 1)}
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				pl.done <- nil
				return
			case <-tick.C:
			}
			due := int64(time.Since(pl.start).Seconds()*float64(perSecond)) - pl.ops.Load()
			if err := l.run(ctx, int(due)); err != nil {
				if ctx.Err() != nil {
					err = nil
				}
				pl.done <- err
				return
			}
			pl.ops.Add(due)
		}
	}()
	return pl
}
