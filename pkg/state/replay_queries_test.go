package state_test

import (
	"context"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
)

// pos is the position (ct, 1) at index ix.
func pos(ct uint32, ix int) event.Position {
	return event.Position{ClusterTime: event.ClusterTime{T: ct, I: 1}, TxnIndex: ix}
}

// advance stores vs through the sink's version guard.
func (d *dlDB) advance(vs ...state.Version) {
	d.t.Helper()
	if err := pgx.BeginFunc(d.ctx, d.pool, func(tx pgx.Tx) error {
		_, err := state.AdvanceVersions(d.ctx, tx, vs)
		return err
	}); err != nil {
		d.t.Fatal(err)
	}
}

func ver(coll, key string, p event.Position, deleted bool) state.Version {
	return state.Version{Doc: state.DocRef{Collection: coll, Key: key}, Position: p, Deleted: deleted}
}

func sortVersions(vs []state.Version) []state.Version {
	sort.Slice(vs, func(i, j int) bool { return vs[i].Doc.Key < vs[j].Doc.Key })
	return vs
}

// lostDB has two collections with versions stored: texts (text ids, in
// public.lq_text) and uuids (uuid ids through id_map, in lq_uuid). In each,
// the key "kept" has its row, "gone" lost it, "tomb" is a delete; uuids'
// "unmapped" has no id_map entry at all.
func lostDB(t *testing.T) *dlDB {
	d := newDLDB(t)
	d.exec(`CREATE TABLE lq_text (id text PRIMARY KEY)`)
	d.exec(`CREATE TABLE lq_uuid (id uuid PRIMARY KEY)`)
	d.exec(`INSERT INTO lq_text VALUES ('kept')`)
	d.exec(`INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES
		('uuids', 'kept', '00000000-0000-0000-0000-000000000001'), ('uuids', 'gone', '00000000-0000-0000-0000-000000000002')`)
	d.exec(`INSERT INTO lq_uuid VALUES ('00000000-0000-0000-0000-000000000001')`)
	d.advance(
		ver("texts", "kept", pos(10, 0), false), ver("texts", "gone", pos(11, 2), false), ver("texts", "tomb", pos(12, 0), true),
		ver("uuids", "kept", pos(20, 0), false), ver("uuids", "gone", pos(21, 0), false), ver("uuids", "tomb", pos(22, 0), true),
		ver("uuids", "unmapped", pos(23, 1), false),
	)
	return d
}

var (
	textTable = state.MappedTable{Table: "public.lq_text", IDColumn: "id", IDIsText: true}
	uuidTable = state.MappedTable{Table: "lq_uuid", IDColumn: "id"}
	allKeys   = []string{"kept", "gone", "tomb", "unmapped", "never"}
)

func TestLostVersions(t *testing.T) {
	t.Parallel()
	d := lostDB(t)
	got, err := state.LostVersions(d.ctx, d.pool, "texts", textTable, allKeys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []state.Version{ver("texts", "gone", pos(11, 2), false)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("texts: lost %v, want %v", got, want)
	}
	got, err = state.LostVersions(d.ctx, d.pool, "uuids", uuidTable, allKeys)
	if err != nil {
		t.Fatal(err)
	}
	want := []state.Version{ver("uuids", "gone", pos(21, 0), false), ver("uuids", "unmapped", pos(23, 1), false)}
	if got = sortVersions(got); !reflect.DeepEqual(got, want) {
		t.Fatalf("uuids: lost %v, want %v", got, want)
	}
	if got, err := state.LostVersions(d.ctx, d.pool, "texts", textTable, []string{"kept"}); err != nil || len(got) != 0 {
		t.Fatalf("only a kept key: %v, %v", got, err)
	}
	if _, err := state.LostVersions(d.ctx, d.pool, "texts", state.MappedTable{Table: "nope", IDColumn: "id", IDIsText: true}, allKeys); err == nil {
		t.Fatal("a missing table was not an error")
	}
}

func TestForgetLostVersions(t *testing.T) {
	t.Parallel()
	d := lostDB(t)
	var got []state.Version
	err := pgx.BeginFunc(d.ctx, d.pool, func(tx pgx.Tx) error {
		var err error
		got, err = state.ForgetLostVersions(d.ctx, tx, "uuids", uuidTable, allKeys)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []state.Version{ver("uuids", "gone", pos(21, 0), false), ver("uuids", "unmapped", pos(23, 1), false)}
	if got = sortVersions(got); !reflect.DeepEqual(got, want) {
		t.Fatalf("forgot %v, want %v", got, want)
	}
	left, err := state.ReadVersions(d.ctx, d.pool, []state.DocRef{
		{Collection: "uuids", Key: "kept"}, {Collection: "uuids", Key: "gone"}, {Collection: "uuids", Key: "tomb"},
		{Collection: "uuids", Key: "unmapped"}, {Collection: "texts", Key: "gone"}})
	if err != nil {
		t.Fatal(err)
	}
	wantLeft := map[state.DocRef]event.Position{
		{Collection: "uuids", Key: "kept"}: pos(20, 0), {Collection: "uuids", Key: "tomb"}: pos(22, 0),
		{Collection: "texts", Key: "gone"}: pos(11, 2), // another collection
	}
	if !reflect.DeepEqual(left, wantLeft) {
		t.Fatalf("versions left %v, want %v", left, wantLeft)
	}
	again, err := state.ForgetLostVersions(d.ctx, d.pool, "uuids", uuidTable, allKeys)
	if err != nil || len(again) != 0 {
		t.Fatalf("second forget: %v, %v", again, err)
	}
}

// TestForgetLostVersionsWaitsForTheSink: a sink transaction that writes a
// lost document's row (and a newer version) while the forget runs holds
// the version row; the forget waits for it and then sees the row, so it
// forgets nothing.
func TestForgetLostVersionsWaitsForTheSink(t *testing.T) {
	t.Parallel()
	d := lostDB(t)
	sink, err := d.pool.Begin(d.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sink.Rollback(context.WithoutCancel(d.ctx)) }()
	if _, err := state.AdvanceVersions(d.ctx, sink, []state.Version{ver("texts", "gone", pos(30, 0), false)}); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Exec(d.ctx, `INSERT INTO lq_text VALUES ('gone')`); err != nil {
		t.Fatal(err)
	}
	type result struct {
		vs  []state.Version
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = pgx.BeginFunc(d.ctx, d.pool, func(tx pgx.Tx) error {
			var err error
			r.vs, err = state.ForgetLostVersions(d.ctx, tx, "texts", textTable, allKeys)
			return err
		})
		done <- r
	}()
	select {
	case r := <-done:
		t.Fatalf("the forget did not wait for the sink's transaction: %v, %v", r.vs, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := sink.Commit(d.ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.vs) != 0 {
		t.Fatalf("forgot %v (%v), want nothing: the row was written", r.vs, r.err)
	}
	vs, err := state.ReadVersions(d.ctx, d.pool, []state.DocRef{{Collection: "texts", Key: "gone"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := vs[state.DocRef{Collection: "texts", Key: "gone"}]; got != pos(30, 0) {
		t.Fatalf("version %v, want the sink's %v", got, pos(30, 0))
	}
}

func TestOpenDeadLetterEvents(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	d.record(dl("e1", "payments", "p1", 100, 0, 0, false), dl("e2", "payments", "p2", 101, 0, 0, false),
		dl("e3", "payments", "p3", 102, 0, 0, false))
	d.exec(`UPDATE cdc.dead_letters SET status = 'retried' WHERE event_id = 'e2'`)
	got, err := state.OpenDeadLetterEvents(d.ctx, d.pool, []string{"e1", "e2", "e4"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"e1": true}; !reflect.DeepEqual(got, want) {
		t.Fatalf("open %v, want %v", got, want)
	}
	if got, err := state.OpenDeadLetterEvents(d.ctx, d.pool, nil); err != nil || len(got) != 0 {
		t.Fatalf("no ids: %v, %v", got, err)
	}
}
