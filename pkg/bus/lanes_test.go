package bus

import (
	"testing"

	"github.com/amanat/cdc/pkg/event"
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
