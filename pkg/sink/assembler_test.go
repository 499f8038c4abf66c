package sink

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
)

func txnItem(seq uint64, lsid string, n int64, idx int, last bool) *item {
	return &item{seq: seq, ev: &event.Event{ID: fmt.Sprintf("e%d", seq), Source: event.Source{
		Txn: &event.Txn{LSID: lsid, Number: n, Index: idx, Last: last}}}}
}

func TestAssemblerReleasesTransactionsWhole(t *testing.T) {
	a := newAssembler()
	a.add(&item{seq: 1, ev: &event.Event{ID: "single"}})
	a.add(txnItem(2, "s", 1, 0, false))
	a.add(txnItem(4, "s", 1, 2, true)) // arrives before index 1 (stream reordering)
	if got := len(a.ready); got != 1 {
		t.Fatalf("ready units = %d, want only the single event", got)
	}
	if m := a.minOpenSeq(); m != 2 {
		t.Fatalf("minOpenSeq = %d, want 2 (the floor must stay before the open transaction)", m)
	}
	a.add(txnItem(5, "s", 1, 0, false)) // a redelivered copy
	a.add(txnItem(3, "s", 1, 1, false))
	units := a.take()
	if len(units) != 2 {
		t.Fatalf("units = %d, want 2", len(units))
	}
	u := units[1]
	if u.txnID != "s:1" || len(u.items) != 4 {
		t.Fatalf("txn unit = %s with %d items, want s:1 with 3 events + 1 duplicate", u.txnID, len(u.items))
	}
	for i := 0; i < 3; i++ {
		if u.items[i].ev.Source.Txn.Index != i {
			t.Fatalf("item %d has index %d: not in transaction order", i, u.items[i].ev.Source.Txn.Index)
		}
	}
	if !u.items[3].noop {
		t.Fatal("the duplicate must be acknowledged but not applied")
	}
	if a.minOpenSeq() != 0 || len(a.open) != 0 {
		t.Fatal("transaction still open after release")
	}
}

func TestOversizeEventIsRejectedWithReason(t *testing.T) {
	m, err := transform.Parse([]byte(`{version: 1, collection: users, table: users, columns: [{column: email, field: email, type: text}]}`), "users.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, _ := transform.NewSet(m)
	key, _ := bson.Marshal(bson.D{{Key: "_id", Value: "u1"}})
	ev := &event.Event{V: 1, ID: "big", Op: event.OpInsert, Key: key, Oversize: 20 << 20,
		Source: event.Source{DB: "d", Coll: "users"}}
	data, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	it := decode(set, 7, data)
	rej, ok := transform.AsRejection(it.reject)
	if !ok || !strings.Contains(rej.Reason, "max_payload") || !strings.Contains(rej.Reason, "cdc replay ids") {
		t.Fatalf("oversize event not rejected with its reason: %v", it.reject)
	}
}

func refItem(coll, key string, t uint32, refs ...transform.Ref) *item {
	return &item{docKey: key, mapping: &transform.Mapping{Collection: coll},
		row: &transform.Row{Refs: refs},
		ev:  &event.Event{ID: coll + key, Op: event.OpInsert, Source: event.Source{Coll: coll, ClusterTime: event.ClusterTime{T: t}}}}
}

// TestResolveRefsFixpoint: a parent whose own unit waits writes nothing,
// so its child waits too; a stale event's references are not checked.
func TestResolveRefsFixpoint(t *testing.T) {
	wait := func(coll, id string) transform.Ref {
		return transform.Ref{Collection: coll, LegacyID: id, Missing: transform.MissingWait, Wait: time.Hour, Field: "f"}
	}
	child := &unit{items: []*item{refItem("payments", "pay1", 10, wait("orders", "o1"))}}
	parent := &unit{items: []*item{refItem("orders", "o1", 11, wait("accounts", "a1"))}}
	staleChild := refItem("payments", "pay2", 5, transform.Ref{Collection: "orders", LegacyID: "gone", Missing: transform.MissingReject, Field: "f"})
	stale := &unit{items: []*item{staleChild}}
	independent := &unit{items: []*item{refItem("orders", "o2", 12)}}
	a := &Applier{now: time.Now}
	st := &refState{rows: map[docRef]bool{}, stale: map[*item]bool{staleChild: true}}
	ok, waiting, rejected, _ := a.resolveRefs(st, []*unit{child, parent, stale, independent})
	if len(rejected) != 0 || staleChild.reject != nil {
		t.Fatalf("a stale event was judged on its references: %v", staleChild.reject)
	}
	if len(waiting) != 2 {
		t.Fatalf("waiting = %d units, want the parent and, through it, the child", len(waiting))
	}
	if len(ok) != 2 {
		t.Fatalf("ok = %d units, want the stale one and the independent one", len(ok))
	}
	// Once the grandparent row exists, both apply.
	st.rows[docRef{"accounts", "a1"}] = true
	ok, waiting, _, _ = a.resolveRefs(st, []*unit{child, parent})
	if len(ok) != 2 || len(waiting) != 0 {
		t.Fatalf("with the grandparent present: ok %d, waiting %d", len(ok), len(waiting))
	}
}

func TestAssemblerSpillsAndCompletesFromSpilledParts(t *testing.T) {
	a := newAssembler()
	a.add(txnItem(1, "s", 1, 0, false))
	a.add(txnItem(2, "s", 1, 1, false))
	if a.memItems != 2 || a.minOpenSeq() != 1 {
		t.Fatalf("memItems %d, minOpenSeq %d: want 2 and 1", a.memItems, a.minOpenSeq())
	}
	spilled := a.spill()
	if len(spilled) != 2 || a.memItems != 0 || a.minOpenSeq() != 0 {
		t.Fatalf("spill returned %d items, left memItems %d, minOpenSeq %d: want 2, 0, 0 (spilled parts must not hold the position)",
			len(spilled), a.memItems, a.minOpenSeq())
	}
	a.add(txnItem(3, "s", 1, 1, false)) // a redelivered copy of a spilled part
	if a.minOpenSeq() != 3 {
		t.Fatalf("a duplicate in memory must hold the position until acknowledged: minOpenSeq %d", a.minOpenSeq())
	}
	a.add(txnItem(4, "s", 1, 2, true))
	units := a.take()
	if len(units) != 1 || !units[0].spilled {
		t.Fatalf("units %d (spilled %v): want the transaction, marked spilled", len(units), len(units) == 1 && units[0].spilled)
	}
	if got := len(units[0].items); got != 2 || !units[0].items[1].noop {
		t.Fatalf("unit items %d: want the last part and the duplicate (noop); the spilled parts are loaded by the sink", got)
	}
}

func TestAssemblerSeededWithSpilledParts(t *testing.T) {
	a := newAssembler()
	seen := time.Now().Add(-time.Hour)
	a.addSpilled("s:1", 0, 10, false, seen)
	a.addSpilled("s:1", 1, 11, true, seen)
	units := a.take()
	if len(units) != 1 || !units[0].spilled || len(units[0].items) != 0 {
		t.Fatalf("a transaction whose every part is spilled must come out whole and spilled: %+v", units)
	}
	a.addSpilled("t:2", 0, 12, false, seen)
	if exp := a.expired(time.Now().Add(-time.Minute)); len(exp) != 1 || exp["t:2"] == nil {
		t.Fatalf("expired = %v, want t:2 (first seen an hour ago)", exp)
	}
	if len(a.open) != 0 {
		t.Fatal("expired transaction still open")
	}
}

func TestOrderTxnPutsPartsInIndexOrderDuplicatesLast(t *testing.T) {
	items := []*item{txnItem(5, "s", 1, 2, true), txnItem(1, "s", 1, 0, false), txnItem(9, "s", 1, 0, false), txnItem(2, "s", 1, 1, false)}
	got := orderTxn(items)
	var idx []int
	for _, it := range got {
		idx = append(idx, it.ev.Source.Txn.Index)
	}
	if fmt.Sprint(idx) != "[0 1 2 0]" || !got[3].noop || got[0].noop {
		t.Fatalf("order %v (last noop %v): want [0 1 2 0] with the duplicate last and marked noop", idx, got[3].noop)
	}
}

func TestIncompleteErrorNamesWhatIsMissing(t *testing.T) {
	for _, tc := range []struct {
		have []int
		last int
		want string
	}{
		{[]int{2, 0}, 3, "indexes [1 3] of 0..3 are missing"},
		{[]int{0, 1}, -1, "its last event never arrived"},
	} {
		if got := newIncomplete("s:1", tc.have, tc.last, "10m").Error(); !strings.Contains(got, tc.want) {
			t.Errorf("newIncomplete(%v, %d) = %q, want it to say %q", tc.have, tc.last, got, tc.want)
		}
	}
}

func TestParkNeverBehindALaterEventOfItsOwnDocument(t *testing.T) {
	a := &Applier{unparked: map[string]bool{}}
	m := &transform.Mapping{Collection: "fundsLedger"}
	mk := func(ct uint32) *unit {
		return &unit{items: []*item{{mapping: m, docKey: "d", ev: &event.Event{Source: event.Source{ClusterTime: event.ClusterTime{T: ct}}}}}}
	}
	held := map[docRef]event.Position{{"fundsLedger", "d"}: {ClusterTime: event.ClusterTime{T: 20}}}
	if a.park(held, mk(10)) {
		t.Fatal("an event earlier than the open dead letter was parked behind it")
	}
	if a.park(held, mk(20)) {
		t.Fatal("the dead-lettered event itself (same position) was parked behind itself")
	}
	if !a.park(held, mk(30)) {
		t.Fatal("a later event was not parked behind the earlier open dead letter")
	}
}
