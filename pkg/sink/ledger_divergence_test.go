package sink_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/transform"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// ledgerYAML is an append-only mapping shaped like fundsLedger, without
// its references (the test is about the row, not its parents).
const ledgerYAML = `version: 1
collection: ledger
table: ledger_t
append_only: true
columns:
  - {column: amount, field: amount, type: "numeric(38,18)", required: true}
  - {column: memo, field: memo, type: text}
  - {column: meta, field: meta, type: jsonb}
`

// TestLedgerRefreshThatDiffersIsAViolation (issue 14, item 5): a refresh
// or snapshot of an append-only document whose stored row has other
// values is dead-lettered as a violation and the row stays as it was; one
// with the same values (even written differently: 1.50 and 1.5, jsonb
// keys in another order) is no violation.
func TestLedgerRefreshThatDiffersIsAViolation(t *testing.T) {
	e := newEnv(t)
	if _, err := e.pool.Exec(e.ctx, `CREATE TABLE ledger_t (id uuid PRIMARY KEY, amount numeric(38,18) NOT NULL, memo text, meta jsonb)`); err != nil {
		t.Fatal(err)
	}
	m, err := transform.Parse([]byte(ledgerYAML), "ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, err := transform.NewSet(m)
	if err != nil {
		t.Fatal(err)
	}
	a := sink.NewApplier(e.pool, set, "", "CDC")
	seq := uint64(0)
	apply := func(op event.Op, doc bson.D) sink.Result {
		t.Helper()
		ct := e.next()
		raw, err := bson.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := bson.Marshal(bson.D{{Key: "_id", Value: doc[0].Value}})
		ev := &event.Event{V: event.Version, ID: fmt.Sprintf("%s:%d.%d:%s", op, ct.T, ct.I, doc[0].Value.(bson.ObjectID).Hex()), Op: op,
			Source: event.Source{DB: "escrow", Coll: "ledger", ClusterTime: ct}, Key: key, Doc: raw}
		data, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		seq++
		res, err := a.Apply(e.ctx, sink.NewBatch(set, []sink.Raw{{Seq: seq, Data: data}}))
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		return res
	}
	entry := func(id bson.ObjectID, amount, memo string, meta bson.D) bson.D {
		return bson.D{{Key: "_id", Value: id}, {Key: "amount", Value: dec(t, amount)}, {Key: "memo", Value: memo}, {Key: "meta", Value: meta}}
	}
	stored := func(id bson.ObjectID) string {
		var s string
		if err := e.pool.QueryRow(e.ctx, `SELECT l.amount::text || '|' || coalesce(l.memo, '') || '|' || coalesce(l.meta::text, '')
			FROM ledger_t l JOIN id_map m ON m.new_id = l.id WHERE m.collection = 'ledger' AND m.legacy_object_id = $1`, id.Hex()).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	id := bson.NewObjectID()
	meta := bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: "x"}}
	if r := apply(event.OpInsert, entry(id, "1.50", "deposit", meta)); r.Applied != 1 || r.DeadLettered != 0 {
		t.Fatalf("insert: %+v", r)
	}
	want := stored(id)
	if !strings.HasPrefix(want, "1.500000000000000000|deposit|") {
		t.Fatalf("inserted row %q", want)
	}

	// The same values, written differently: no violation.
	same := entry(id, "1.5", "deposit", bson.D{{Key: "b", Value: "x"}, {Key: "a", Value: int32(1)}})
	for _, op := range []event.Op{event.OpRefresh, event.OpSnapshot} {
		if r := apply(op, same); r.DeadLettered != 0 {
			t.Fatalf("%s with the stored values: %+v, want no dead letter", op, r)
		}
	}
	if n := e.count(`SELECT count(*) FROM cdc.dead_letters`); n != 0 {
		t.Fatalf("%d dead letters after refreshes with the stored values", n)
	}

	// Tampered in Mongo: the amount, then only the jsonb (each a document
	// of its own: a document with an open dead letter parks its later
	// events).
	cases := []struct {
		name string
		op   event.Op
		doc  func(id bson.ObjectID) bson.D
	}{
		{"refresh with another amount", event.OpRefresh, func(id bson.ObjectID) bson.D { return entry(id, "1000000.50", "deposit", meta) }},
		{"snapshot with another amount by 1E-18", event.OpSnapshot, func(id bson.ObjectID) bson.D { return entry(id, "1.500000000000000001", "deposit", meta) }},
		{"refresh with other metadata", event.OpRefresh, func(id bson.ObjectID) bson.D {
			return entry(id, "1.50", "deposit", bson.D{{Key: "a", Value: int32(2)}, {Key: "b", Value: "x"}})
		}},
	}
	for _, tc := range cases {
		id := bson.NewObjectID()
		apply(event.OpInsert, entry(id, "1.50", "deposit", meta))
		want := stored(id)
		r := apply(tc.op, tc.doc(id))
		if r.DeadLettered != 1 || r.Violations != 1 || r.Applied != 0 {
			t.Fatalf("%s: %+v, want dead-lettered 1, applied 0", tc.name, r)
		}
		if got := stored(id); got != want {
			t.Fatalf("%s: row became %q, want it kept as %q", tc.name, got, want)
		}
		var class, reason string
		if err := e.pool.QueryRow(e.ctx, `SELECT error_class, reason FROM cdc.dead_letters WHERE doc_key = $1`, id.Hex()).Scan(&class, &reason); err != nil {
			t.Fatal(err)
		}
		if class != "violation" || !strings.Contains(reason, "append-only violation: ledger_t row") || !strings.Contains(reason, "exists with other values") {
			t.Fatalf("%s: dead letter class %q reason %q, want a violation naming the row", tc.name, class, reason)
		}
	}
	if n := e.count(`SELECT count(*) FROM cdc.dead_letters WHERE error_class = 'violation' AND status = 'open'`); n != len(cases) {
		t.Fatalf("%d open violations, want %d", n, len(cases))
	}
	// Another entry in the same batch as a divergent one still applies.
	other := bson.NewObjectID()
	id = bson.NewObjectID()
	apply(event.OpInsert, entry(id, "1.50", "deposit", meta))
	ct := e.next()
	var msgs []sink.Raw
	for _, d := range []bson.D{entry(id, "7", "deposit", meta), entry(other, "2", "fee", nil)} {
		raw, _ := bson.Marshal(d)
		key, _ := bson.Marshal(bson.D{{Key: "_id", Value: d[0].Value}})
		ev := &event.Event{V: event.Version, ID: fmt.Sprintf("batch:%s", d[0].Value.(bson.ObjectID).Hex()), Op: event.OpRefresh,
			Source: event.Source{DB: "escrow", Coll: "ledger", ClusterTime: ct}, Key: key, Doc: raw}
		data, _ := ev.Marshal()
		seq++
		msgs = append(msgs, sink.Raw{Seq: seq, Data: data})
	}
	r, err := a.Apply(e.ctx, sink.NewBatch(set, msgs))
	if err != nil {
		t.Fatal(err)
	}
	if r.Applied != 1 || r.DeadLettered != 1 {
		t.Fatalf("batch of a divergent and a new entry: %+v, want applied 1, dead-lettered 1", r)
	}
	if got := stored(other); !strings.HasPrefix(got, "2.000000000000000000|fee") {
		t.Fatalf("the new entry stored %q", got)
	}
}
