package sink

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"

	"github.com/jackc/pgx/v5/pgconn"

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

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Class
	}{
		{&pgconn.PgError{Code: "23505"}, Poison},    // unique violation
		{&pgconn.PgError{Code: "23514"}, Poison},    // check violation
		{&pgconn.PgError{Code: "22003"}, Poison},    // numeric out of range
		{&pgconn.PgError{Code: "P0001"}, Poison},    // trigger raise (ledger immutability)
		{&pgconn.PgError{Code: "40001"}, Retryable}, // serialization failure
		{&pgconn.PgError{Code: "40P01"}, Retryable}, // deadlock
		{&pgconn.PgError{Code: "57P01"}, Retryable}, // admin shutdown
		{&pgconn.PgError{Code: "08006"}, Retryable}, // connection failure
		{&pgconn.PgError{Code: "42703"}, Fatal},     // undefined column
		{&pgconn.PgError{Code: "42501"}, Fatal},     // insufficient privilege
		{&transform.Rejection{Reason: "x"}, Poison}, //
		{fmt.Errorf("wrapped: %w", transform.ErrSchemaMismatch), Fatal},
		{errors.New("connection reset by peer"), Retryable},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
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
