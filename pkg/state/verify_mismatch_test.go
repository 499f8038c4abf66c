package state_test

import (
	"testing"

	"github.com/amanat/cdc/pkg/state"
)

// TestVerifyMismatches: a mismatch is recorded once per document and
// check, confirmed again it counts and keeps what was seen last, and the
// summary names the newest; values a text column refuses are stored
// escaped.
func TestVerifyMismatches(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	if _, n, ok, err := state.VerifyMismatches(d.ctx, d.pool); err != nil || ok || n != 0 {
		t.Fatalf("empty table: %v %v %v", n, ok, err)
	}
	rec := func(m state.VerifyMismatch) {
		t.Helper()
		if err := state.RecordVerifyMismatch(d.ctx, d.pool, m); err != nil {
			t.Fatal(err)
		}
	}
	first := state.VerifyMismatch{Collection: "payments", DocKey: "p1", Check: "document_diff", Table: "payments", Column: "amount",
		Mongo: "1099.99", Postgres: "1099.990000000000000001", Detail: "values differ"}
	rec(first)
	d.exec(`UPDATE cdc.verify_mismatches SET last_seen = last_seen - interval '1 minute', first_seen = first_seen - interval '1 minute'`)
	rec(state.VerifyMismatch{Collection: "users", DocKey: "u\x00\xff", Check: "idmap_mongo_to_pg", Detail: "no row"})
	last, n, ok, err := state.VerifyMismatches(d.ctx, d.pool)
	if err != nil || !ok || n != 2 {
		t.Fatalf("two mismatches: %v %v %v", n, ok, err)
	}
	if last.Collection != "users" || last.DocKey != `u\x00`+"\uFFFD" || last.Check != "idmap_mongo_to_pg" || last.Table != "" || last.Times != 1 {
		t.Fatalf("newest %+v", last)
	}
	// Found again: one row, two confirmations, the latest values.
	again := first
	again.Postgres = "1099.990000000000000002"
	rec(again)
	last, n, ok, err = state.VerifyMismatches(d.ctx, d.pool)
	if err != nil || !ok || n != 2 {
		t.Fatalf("after a second confirmation: %v %v %v", n, ok, err)
	}
	if last.DocKey != "p1" || last.Times != 2 || last.Postgres != "1099.990000000000000002" || last.Column != "amount" ||
		!last.FirstSeen.Before(last.LastSeen) {
		t.Fatalf("newest %+v", last)
	}
}
