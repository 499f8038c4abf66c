package state_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
)

// dlAt is dead letter ev of (coll, key) whose stored envelope has source
// cluster time ct.
func dlAt(ev, coll, key string, ct event.ClusterTime) state.NewDeadLetter {
	d := dl(ev, coll, key, ct.T, 0, 0, false)
	d.Event = fmt.Appendf(nil, `{"id": %q, "source": {"cluster_time": {"$timestamp": {"t": %d, "i": %d}}}}`, ev, ct.T, ct.I)
	return d
}

func TestNewestDeadLetterTime(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	if ct, ok, err := state.NewestDeadLetterTime(d.ctx, d.pool); err != nil || ok {
		t.Fatalf("no dead letters: %v %v %v", ct, ok, err)
	}
	d.record(dl("bare", "payments", "p0", 999, 0, 0, false)) // its envelope has no cluster time
	if ct, ok, err := state.NewestDeadLetterTime(d.ctx, d.pool); err != nil || ok {
		t.Fatalf("an envelope without a cluster time: %v %v %v", ct, ok, err)
	}
	d.record(dlAt("a", "payments", "p1", event.ClusterTime{T: 200, I: 1}), dlAt("b", "payments", "p2", event.ClusterTime{T: 100, I: 7}),
		dlAt("c", "payments", "p3", event.ClusterTime{T: 200, I: 3}))
	// Closed entries count too: the sink consumed them.
	d.exec(`UPDATE cdc.dead_letters SET status = 'dropped' WHERE event_id = 'c'`)
	ct, ok, err := state.NewestDeadLetterTime(d.ctx, d.pool)
	if err != nil || !ok {
		t.Fatalf("newest: %v %v", ok, err)
	}
	if want := (event.ClusterTime{T: 200, I: 3}); ct != want {
		t.Fatalf("newest %v, want %v", ct, want)
	}
}

func TestDocVersions(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	d.advance(ver("users", "u1", pos(10, 0), false), ver("users", "u2", pos(11, 3), true), ver("other", "u3", pos(12, 0), false))
	got, err := state.DocVersions(d.ctx, d.pool, "users", []string{"u1", "u2", "u3", "u4"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]state.Version{"u1": ver("users", "u1", pos(10, 0), false), "u2": ver("users", "u2", pos(11, 3), true)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("versions %v, want %v", got, want)
	}
	if got, err := state.DocVersions(d.ctx, d.pool, "users", nil); err != nil || len(got) != 0 {
		t.Fatalf("no keys: %v, %v", got, err)
	}
}

func TestDanglingRecords(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	b := &pgx.Batch{}
	state.QueueRecordDangling(b, []state.Dangling{
		{Doc: state.DocRef{Collection: "payments", Key: "p1"}, Column: "buyer_id", RefCollection: "users", RefLegacyID: "u1"},
		{Doc: state.DocRef{Collection: "payments", Key: "p1"}, Column: "seller_id", RefCollection: "users", RefLegacyID: "u2", Event: []byte("env")},
		{Doc: state.DocRef{Collection: "payments", Key: "p2"}, Column: "buyer_id", RefCollection: "users", RefLegacyID: "u3"},
		{Doc: state.DocRef{Collection: "orders", Key: "p1"}, Column: "buyer_id", RefCollection: "users", RefLegacyID: "u4"},
	})
	if err := d.pool.SendBatch(d.ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	got, err := state.DanglingRecords(d.ctx, d.pool, "payments", []string{"p1", "p9"})
	if err != nil {
		t.Fatal(err)
	}
	byCol := map[string]state.Dangling{}
	for _, g := range got {
		byCol[g.Doc.Key+"/"+g.Column] = g
	}
	want := map[string]state.Dangling{
		"p1/buyer_id":  {Doc: state.DocRef{Collection: "payments", Key: "p1"}, Column: "buyer_id", RefCollection: "users", RefLegacyID: "u1"},
		"p1/seller_id": {Doc: state.DocRef{Collection: "payments", Key: "p1"}, Column: "seller_id", RefCollection: "users", RefLegacyID: "u2"},
	}
	if len(got) != len(want) || !reflect.DeepEqual(byCol, want) {
		t.Fatalf("records %v, want %v (without envelopes)", got, want)
	}
}

func TestOpenDeadLetterReasons(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	older := dl("a1", "payments", "p1", 100, 0, 0, false)
	newer := dl("a2", "payments", "p1", 101, 0, 0, false)
	newer.Class, newer.Reason = state.ClassPoison, "refused by Postgres"
	closed := dl("b1", "payments", "p2", 102, 0, 0, false)
	d.record(older, newer, closed, dl("c1", "orders", "p3", 103, 0, 0, false))
	d.exec(`UPDATE cdc.dead_letters SET status = 'dropped' WHERE event_id = 'b1'`)
	got, err := state.OpenDeadLetterReasons(d.ctx, d.pool, "payments", []string{"p1", "p2", "p3"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"p1": "poison: refused by Postgres"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("reasons %v, want %v", got, want)
	}
	if got, err := state.OpenDeadLetterReasons(d.ctx, d.pool, "payments", nil); err != nil || len(got) != 0 {
		t.Fatalf("no keys: %v, %v", got, err)
	}
}
