package benchkit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/benchkit"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"
)

// TestMain shares one PostgreSQL cluster (pgtest) among the tests and
// fails the run if a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithShared(m, pgtest.Options{}))
}

// rawScenario is a captured stream built by hand from the workload's
// documents: the sellers, then every insert the generator makes (its
// updates and deletes left out, so the documents need no MongoDB to
// compute), then a few changes whose post-images are known.
type rawScenario struct {
	msgs    []benchkit.Captured
	prolog  int
	changed bson.ObjectID // a request shipped with one specification left
	gone    bson.ObjectID // a request deleted
	renamed bson.ObjectID // a user whose email changed
}

func envelope(t *testing.T, seq int, op event.Op, coll string, id bson.ObjectID, doc bson.D) benchkit.Captured {
	t.Helper()
	key, _ := bson.Marshal(bson.D{{Key: "_id", Value: id}})
	ev := &event.Event{V: event.Version, ID: fmt.Sprintf("test:%d", seq), Op: op, Key: key,
		Source: event.Source{DB: "bench", Coll: coll, ClusterTime: event.ClusterTime{T: 1_800_000_000, I: uint32(seq)}}}
	if doc != nil {
		raw, err := bson.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		ev.Doc = raw
	}
	data, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, ev.ID)
	h.Set(jetstream.ExpectedStreamHeader, "CDC")
	return benchkit.Captured{Subject: "cdc.bench." + coll, Header: h, Data: data}
}

func setField(d bson.D, key string, v any) bson.D {
	out := append(bson.D(nil), d...)
	for i := range out {
		if out[i].Key == key {
			out[i].Value = v
			return out
		}
	}
	return append(out, bson.E{Key: key, Value: v})
}

func newRawScenario(t *testing.T) rawScenario {
	t.Helper()
	gen := benchkit.NewWorkload(benchkit.WorkloadOptions{Seed: 11, Sellers: 20})
	sc := rawScenario{prolog: gen.PrologueEvents()}
	docs := map[bson.ObjectID]bson.D{}
	referenced := map[bson.ObjectID]bool{}
	var requests []bson.ObjectID
	var users []bson.ObjectID
	add := func(op benchkit.Op) {
		sc.msgs = append(sc.msgs, envelope(t, len(sc.msgs)+1, event.OpInsert, op.Coll, op.ID, op.Doc))
		docs[op.ID] = op.Doc
		for _, r := range op.Refs {
			referenced[r] = true
		}
		switch op.Coll {
		case benchkit.CollPurchaseRequests:
			requests = append(requests, op.ID)
		case benchkit.CollUsers:
			users = append(users, op.ID)
		}
	}
	for len(sc.msgs) < 2300 {
		op := gen.Next()
		switch op.Kind {
		case benchkit.OpInsert:
			add(op)
		case benchkit.OpTxn:
			for _, sub := range op.Txn {
				if sub.Kind == benchkit.OpInsert {
					add(sub)
				}
			}
		}
	}
	for _, id := range requests {
		if !referenced[id] && sc.gone.IsZero() {
			sc.gone = id
		} else if sc.changed.IsZero() {
			sc.changed = id
		}
	}
	sc.renamed = users[len(users)-1]
	next := func(op event.Op, coll string, id bson.ObjectID, doc bson.D) {
		sc.msgs = append(sc.msgs, envelope(t, len(sc.msgs)+1, op, coll, id, doc))
	}
	pr := setField(setField(docs[sc.changed], "status", "shipped"), "specifications", bson.A{bson.D{{Key: "name", Value: "Color"}, {Key: "value", Value: "Blue"}}})
	next(event.OpUpdate, benchkit.CollPurchaseRequests, sc.changed, pr)
	next(event.OpUpdate, benchkit.CollUsers, sc.renamed, setField(docs[sc.renamed], "email", "renamed@example.com"))
	next(event.OpDelete, benchkit.CollPurchaseRequests, sc.gone, nil)
	// Inserted, updated and deleted within one batch: nothing to write.
	ghost := bson.NewObjectID()
	u := setField(docs[sc.renamed], "_id", ghost)
	u = setField(setField(setField(u, "email", "ghost@example.com"), "telegramId", int64(1)), "referralCode", "GHOST")
	next(event.OpInsert, benchkit.CollUsers, ghost, u)
	next(event.OpUpdate, benchkit.CollUsers, ghost, setField(u, "firstName", "Ghost"))
	next(event.OpDelete, benchkit.CollUsers, ghost, nil)
	return sc
}

func builtin(t *testing.T) *transform.Set {
	t.Helper()
	set, err := transform.Load(transforms.Builtin, ".")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func migrated(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	if _, err := migrate.Up(context.Background(), url, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return url, pool
}

// checkRawTarget: the tables hold the scenario's final rows.
func checkRawTarget(t *testing.T, pool *pgxpool.Pool, d *benchkit.RawData, sc rawScenario) {
	t.Helper()
	ctx := context.Background()
	for i, tb := range d.Tables {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+tb.Name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != d.Live[i] || n == 0 {
			t.Errorf("%s holds %d rows, want %d", tb.Name, n, d.Live[i])
		}
	}
	one := func(q string, args ...any) string {
		var s string
		if err := pool.QueryRow(ctx, q, args...).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return s
	}
	changed := benchkit.RawID(benchkit.CollPurchaseRequests, sc.changed.Hex())
	if got := one(`SELECT status || ':' || (SELECT string_agg(name || '=' || value, ',') FROM purchase_request_specifications s
		WHERE s.purchase_request_id = r.id) FROM purchase_requests r WHERE id = $1`, changed); got != "shipped:Color=Blue" {
		t.Errorf("the updated request is %q, want shipped with its one new specification", got)
	}
	if got := one(`SELECT email FROM users WHERE id = $1`, benchkit.RawID(benchkit.CollUsers, sc.renamed.Hex())); got != "renamed@example.com" {
		t.Errorf("the updated user's email is %q", got)
	}
	gone := benchkit.RawID(benchkit.CollPurchaseRequests, sc.gone.Hex())
	if got := one(`SELECT (SELECT count(*) FROM purchase_requests WHERE id = $1) + (SELECT count(*) FROM purchase_request_specifications
		WHERE purchase_request_id = $1) + (SELECT count(*) FROM purchase_request_delivery_info WHERE purchase_request_id = $1)`, gone); got != "0" {
		t.Errorf("the deleted request left %s rows", got)
	}
	if got := one(`SELECT count(*) FROM funds_ledger_entries l JOIN payments p ON p.id = l.payment_id JOIN users u ON u.id = l.user_id`); got == "0" {
		t.Error("no ledger entry joins its payment and user: references were not resolved")
	}
}

// TestRawCeilingsWriteTheSameRows: PrepareRaw maps a captured stream,
// RawCopy and RawPipeline (after RawPublish) leave the same final rows,
// inserts, updates with their child rows, deletes and all, and Capture
// reads the stream back as published.
func TestRawCeilingsWriteTheSameRows(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sc := newRawScenario(t)
	set := builtin(t)
	d, err := benchkit.PrepareRaw(set, sc.msgs, 3, sc.prolog)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if len(d.Events) != len(sc.msgs) || d.Prologue != sc.prolog {
		t.Fatalf("%d events, prologue %d", len(d.Events), d.Prologue)
	}
	sum := d.Prologue
	for k, n := range d.PartitionCounts {
		if n == 0 {
			t.Errorf("partition %d is empty", k)
		}
		sum += n
	}
	if sum != len(d.Events) {
		t.Fatalf("partitions and prologue hold %d of %d events", sum, len(d.Events))
	}

	_, copyPool := migrated(t)
	m, err := benchkit.RawCopy(ctx, copyPool.Config().ConnString(), d)
	if err != nil {
		t.Fatalf("raw copy: %v", err)
	}
	if m.Events != len(d.Events) || m.Rate() <= 0 {
		t.Fatalf("raw copy measured %+v", m)
	}
	checkRawTarget(t, copyPool, d, sc)

	_, js := bustest.Start(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CDC", Subjects: []string{"cdc.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, msg := range sc.msgs {
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: msg.Subject, Header: msg.Header, Data: msg.Data}); err != nil {
			t.Fatal(err)
		}
	}
	back, err := benchkit.Capture(ctx, js, []string{"CDC"}, 0)
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	if len(back) != len(sc.msgs) || string(back[7].Data) != string(sc.msgs[7].Data) || back[7].Subject != sc.msgs[7].Subject {
		t.Fatalf("captured %d messages, not the %d published", len(back), len(sc.msgs))
	}
	if prefix, err := benchkit.Capture(ctx, js, []string{"CDC"}, 100); err != nil || len(prefix) != 100 {
		t.Fatalf("a prefix of 100: %d (%v)", len(prefix), err)
	}

	pub, err := benchkit.RawPublish(ctx, js, d, time.Minute)
	if err != nil {
		t.Fatalf("raw publish: %v", err)
	}
	if pub.Events != len(d.Events) || pub.Rate() <= 0 {
		t.Fatalf("raw publish measured %+v", pub)
	}
	_, pipePool := migrated(t)
	pipe, err := benchkit.RawPipeline(ctx, js, pipePool.Config().ConnString(), d)
	if err != nil {
		t.Fatalf("raw pipeline: %v", err)
	}
	if pipe.Events != len(d.Events) || pipe.Rate() <= 0 {
		t.Fatalf("raw pipeline measured %+v", pipe)
	}
	checkRawTarget(t, pipePool, d, sc)
}

// TestPrepareRawRefusesAnotherWorkload: a prologue that is not the
// sellers, or a collection outside the workload, is not the benchmark's
// stream.
func TestPrepareRawRefusesAnotherWorkload(t *testing.T) {
	sc := newRawScenario(t)
	set := builtin(t)
	if _, err := benchkit.PrepareRaw(set, sc.msgs, 2, len(sc.msgs)); err == nil {
		t.Fatal("a prologue covering requests was accepted")
	}
	odd := append([]benchkit.Captured{envelope(t, 1, event.OpInsert, "categories", bson.NewObjectID(), bson.D{{Key: "name", Value: "x"}})}, sc.msgs...)
	if _, err := benchkit.PrepareRaw(set, odd, 2, 0); err == nil {
		t.Fatal("a categories event was accepted")
	}
}
