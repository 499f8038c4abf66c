package event_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
)

func TestTxnSequencer(t *testing.T) {
	tok := func(s string) bson.Raw { b, _ := bson.Marshal(bson.D{{Key: "_data", Value: s}}); return b }
	ev := func(id string) *event.Event { return &event.Event{ID: id} }
	t1 := &event.ChangeTxn{LSID: "aa", Number: 1}
	t2 := &event.ChangeTxn{LSID: "aa", Number: 2}
	var s event.TxnSequencer
	var got []event.Sequenced
	got = append(got, s.Add(ev("plain"), nil, tok("p"))...)
	got = append(got, s.Add(ev("a0"), t1, tok("a0"))...)
	got = append(got, s.Add(ev("a1"), t1, tok("a1"))...)
	got = append(got, s.Add(ev("a2"), t1, tok("a2"))...)
	got = append(got, s.Add(ev("b0"), t2, tok("b0"))...) // a new transaction ends t1
	if !s.Holding() {
		t.Fatal("the newest transaction event must be held")
	}
	got = append(got, s.Flush()...) // idle: b0 was its transaction's last
	want := []struct {
		id      string
		index   int
		last    bool
		txn     bool
		withTok bool
	}{
		{"plain", 0, false, false, true},
		{"a0", 0, false, true, false},
		{"a1", 1, false, true, false},
		{"a2", 2, true, true, true},
		{"b0", 0, true, true, true},
	}
	if len(got) != len(want) {
		t.Fatalf("released %d events, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Event.ID != w.id || (g.Token != nil) != w.withTok || (g.Event.Source.Txn != nil) != w.txn {
			t.Fatalf("event %d = %s (token %v, txn %v), want %+v", i, g.Event.ID, g.Token != nil, g.Event.Source.Txn, w)
		}
		if w.txn && (g.Event.Source.Txn.Index != w.index || g.Event.Source.Txn.Last != w.last) {
			t.Fatalf("event %s: index %d last %v, want %d %v", w.id, g.Event.Source.Txn.Index, g.Event.Source.Txn.Last, w.index, w.last)
		}
	}
	if s.Flush() != nil {
		t.Fatal("flush of an empty sequencer released something")
	}
}
