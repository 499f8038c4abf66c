package bus

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/event"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestLaneRouting(t *testing.T) {
	c := StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc"}.WithLanes([]Lane{
		{Name: "ledger", Collections: []string{"fundsLedger", "payments"}},
		{Name: "users", Collections: []string{"users"}},
	})
	ev := func(coll string, txn *event.Txn) *event.Event {
		return &event.Event{Source: event.Source{DB: "escrow", Coll: coll, Txn: txn}}
	}
	txn := func(n int64, ix int) *event.Txn { return &event.Txn{LSID: "aa", Number: n, Index: ix} }
	r := NewLaneRouter(c)
	steps := []struct {
		ev            *event.Event
		lane, subject string
		stream        string
	}{
		{ev("users", nil), "users", "cdc.users.escrow.users", "CDC_users"},
		{ev("payments", nil), "ledger", "cdc.ledger.escrow.payments", "CDC_ledger"},
		// A transaction goes whole to its first event's lane.
		{ev("users", txn(1, 0)), "users", "cdc.users.escrow.users", "CDC_users"},
		{ev("payments", txn(1, 1)), "users", "cdc.users.escrow.payments", "CDC_users"},
		{ev("fundsLedger", txn(1, 2)), "users", "cdc.users.escrow.fundsLedger", "CDC_users"},
		// The next transaction starts afresh.
		{ev("payments", txn(2, 0)), "ledger", "cdc.ledger.escrow.payments", "CDC_ledger"},
		{ev("users", txn(2, 1)), "ledger", "cdc.ledger.escrow.users", "CDC_ledger"},
		// Outside a transaction again: the collection's lane.
		{ev("users", nil), "users", "cdc.users.escrow.users", "CDC_users"},
		// A transaction whose first event this router never saw: its collection's lane.
		{ev("users", txn(3, 4)), "users", "cdc.users.escrow.users", "CDC_users"},
	}
	for i, s := range steps {
		lane, err := r.Route(s.ev)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if lane != s.lane {
			t.Fatalf("step %d (%s txn %+v): lane %q, want %q", i, s.ev.Source.Coll, s.ev.Source.Txn, lane, s.lane)
		}
		msg, _, err := LaneEventMsg(c, lane, s.ev, 0)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Subject != s.subject || c.StreamOf(msg.Subject) != s.stream || c.LaneStream(lane) != s.stream {
			t.Fatalf("step %d: subject %s stream %s, want %s %s", i, msg.Subject, c.StreamOf(msg.Subject), s.subject, s.stream)
		}
	}
	if _, err := r.Route(ev("unknown", nil)); err == nil {
		t.Fatal("a collection in no lane: want an error")
	}
}

func TestNoLanesUnchanged(t *testing.T) {
	c := StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc"}
	r := NewLaneRouter(c)
	e := &event.Event{Source: event.Source{DB: "escrow", Coll: "users", Txn: &event.Txn{LSID: "a", Index: 0}}}
	lane, err := r.Route(e)
	if err != nil || lane != "" {
		t.Fatalf("no lanes: lane %q err %v, want the default lane", lane, err)
	}
	msg, _, err := EventMsg(c, e, 0)
	if err != nil || msg.Subject != "cdc.escrow.users" || c.StreamOf(msg.Subject) != "CDC" || c.ForLane("").Stream != "CDC" {
		t.Fatalf("no lanes: subject %v stream %s err %v", msg, c.StreamOf("cdc.escrow.users"), err)
	}
	if got := c.LaneNames(); len(got) != 1 || got[0] != "" {
		t.Fatalf("LaneNames without lanes = %q", got)
	}
}

func TestSplitLaneRouting(t *testing.T) {
	const parts = 4
	var lanes []Lane
	for p := range parts {
		lanes = append(lanes, Lane{Name: fmt.Sprintf("pay_%d", p), Collections: []string{"payments"}, Group: "pay", Part: p, Parts: parts})
	}
	lanes = append(lanes, Lane{Name: "users", Collections: []string{"users"}})
	c := StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc"}.WithLanes(lanes)
	if got := c.LanesOf("payments"); !slices.Equal(got, []string{"pay_0", "pay_1", "pay_2", "pay_3"}) {
		t.Fatalf("LanesOf(payments) = %q", got)
	}
	if got := c.LanesOf("users"); !slices.Equal(got, []string{"users"}) {
		t.Fatalf("LanesOf(users) = %q", got)
	}
	if got := c.LanesOf("nope"); got != nil {
		t.Fatalf("LanesOf(nope) = %q, want nil", got)
	}
	key := func(v any) bson.Raw {
		b, err := bson.Marshal(bson.D{{Key: "_id", Value: v}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ev := func(coll string, id any, txn *event.Txn) *event.Event {
		return &event.Event{ID: "e", Key: key(id), Source: event.Source{DB: "escrow", Coll: coll, Txn: txn}}
	}
	// One document always routes to one part, and the parts share the load.
	r := NewLaneRouter(c)
	count := map[string]int{}
	for i := range 4000 {
		oid := bson.NewObjectIDFromTimestamp(time.Unix(int64(1_700_000_000+i), 0))
		first, err := r.Route(ev("payments", oid, nil))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			again, _ := r.Route(ev("payments", oid, nil))
			if again != first {
				t.Fatalf("document %s routed to %s then %s", oid.Hex(), first, again)
			}
		}
		count[first]++
	}
	for p := range parts {
		if n := count[fmt.Sprintf("pay_%d", p)]; n < 800 || n > 1200 {
			t.Fatalf("part %d got %d of 4000 documents (%v): the hash does not spread", p, n, count)
		}
	}
	// The _id's type is part of the hash: ObjectId(X) and "X" are
	// distinct documents (checked over many X so that one accidental
	// equality cannot pass or fail it).
	same := 0
	for i := range 400 {
		oid := bson.NewObjectIDFromTimestamp(time.Unix(int64(1_600_000_000+i), 0))
		a, _ := c.LaneOf(ev("payments", oid, nil))
		b, _ := c.LaneOf(ev("payments", oid.Hex(), nil))
		if a == b {
			same++
		}
	}
	if same > 160 {
		t.Fatalf("ObjectId(X) and \"X\" share a part %d times of 400: the type is not hashed", same)
	}
	// A transaction goes whole to its first event's lane, split or not.
	oid := bson.NewObjectID()
	txn := func(ix int) *event.Txn { return &event.Txn{LSID: "bb", Number: 9, Index: ix} }
	first, _ := r.Route(ev("payments", oid, txn(0)))
	for ix := 1; ix < 20; ix++ {
		if l, _ := r.Route(ev("payments", bson.NewObjectID(), txn(ix))); l != first {
			t.Fatalf("transaction event %d routed to %s, first to %s", ix, l, first)
		}
	}
	if l, _ := r.Route(ev("users", "u1", txn(20))); l != first {
		t.Fatalf("transaction's users event routed to %s, first to %s", l, first)
	}
	// One document to MongoDB, one lane: int32 7, NumberLong(7) and 7.0
	// have one key.
	seven, _ := c.LaneOf(ev("payments", int32(7), nil))
	for _, v := range []any{int64(7), 7.0} {
		if l, _ := c.LaneOf(ev("payments", v, nil)); l != seven {
			t.Fatalf("_id %v (%T) routed to %s, int32 7 to %s", v, v, l, seven)
		}
	}
	// A key without _id cannot choose a part.
	bad := &event.Event{ID: "x", Key: key(1)[:0:0], Source: event.Source{DB: "escrow", Coll: "payments"}}
	bad.Key, _ = bson.Marshal(bson.D{{Key: "other", Value: 1}})
	if _, err := c.LaneOf(bad); !errors.Is(err, event.ErrMalformed) {
		t.Fatalf("key without _id: err %v, want ErrMalformed", err)
	}
}

// TestPartOfGolden pins PartOf's values: documents already routed must
// keep their lane across versions of this program.
func TestPartOfGolden(t *testing.T) {
	tests := []struct {
		key   string
		parts int
		want  int
	}{
		{"65f1a2b3c4d5e6f708192a3b", 8, 2},
		{"65f1a2b3c4d5e6f708192a3b", 5, 2},
		{"ab", 8, 1},
		{"ab", 3, 0},
		{`{"$numberLong":"7"}`, 8, 6},
		{`{"$numberLong":"7"}`, 1, 0},
	}
	for _, tc := range tests {
		if got := PartOf(tc.key, tc.parts); got != tc.want {
			t.Errorf("PartOf(%q, %d) = %d, want %d", tc.key, tc.parts, got, tc.want)
		}
	}
}
