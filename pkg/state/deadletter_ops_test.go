package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/state"
)

// dlDB is a fresh migrated database with dead letters recorded through
// state.RecordDeadLetters, the sink's own write path.
type dlDB struct {
	t    *testing.T
	ctx  context.Context
	pool *pgxpool.Pool
}

func newDLDB(t *testing.T) *dlDB {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	url := pgtest.NewDatabase(t)
	if _, err := migrate.Up(ctx, url, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &dlDB{t: t, ctx: ctx, pool: pool}
}

func (d *dlDB) record(dls ...state.NewDeadLetter) {
	d.t.Helper()
	if err := pgx.BeginFunc(d.ctx, d.pool, func(tx pgx.Tx) error { return state.RecordDeadLetters(d.ctx, tx, dls) }); err != nil {
		d.t.Fatal(err)
	}
}

func (d *dlDB) id(eventID string) int64 {
	d.t.Helper()
	var id int64
	if err := d.pool.QueryRow(d.ctx, `SELECT id FROM cdc.dead_letters WHERE event_id = $1`, eventID).Scan(&id); err != nil {
		d.t.Fatalf("dead letter of %s: %v", eventID, err)
	}
	return id
}

func (d *dlDB) exec(sql string, args ...any) {
	d.t.Helper()
	if _, err := d.pool.Exec(d.ctx, sql, args...); err != nil {
		d.t.Fatal(err)
	}
}

// status returns the status, status_reason and whether status_at is set.
func (d *dlDB) status(eventID string) (state.Status, string, bool) {
	d.t.Helper()
	var st string
	var reason *string
	var at *time.Time
	if err := d.pool.QueryRow(d.ctx, `SELECT status, status_reason, status_at FROM cdc.dead_letters WHERE event_id = $1`, eventID).Scan(&st, &reason, &at); err != nil {
		d.t.Fatal(err)
	}
	r := ""
	if reason != nil {
		r = *reason
	}
	return state.Status(st), r, at != nil
}

// events names the entries of a selection by event id, in order.
func events(es []state.DeadLetter) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.EventID)
	}
	return out
}

func (d *dlDB) ids(eventIDs ...string) []int64 {
	out := []int64{}
	for _, e := range eventIDs {
		out = append(out, d.id(e))
	}
	return out
}

func added(s *state.Selection) []int64 {
	if s.Added == nil {
		return []int64{}
	}
	return s.Added
}

const lsid = "0123456789abcdef0123456789abcdef"

func txnID(n int64) string { return fmt.Sprintf("%s:%d", lsid, n) }

// dl is a dead letter of event ev of (coll, key) at cluster time ct; txn
// places it in transaction n at index ix (n 0: outside a transaction).
func dl(ev, coll, key string, ct uint32, n int64, ix int, last bool) state.NewDeadLetter {
	d := state.NewDeadLetter{EventID: ev, Collection: coll, DocKey: key, StreamSeq: uint64(ct), Class: state.ClassRejected,
		Field: "amount", Value: "-1", Reason: "must be greater than 0 (" + ev + ")", Event: []byte(`{"id": "` + ev + `"}`),
		Position: event.Position{ClusterTime: event.ClusterTime{T: ct, I: 1}}}
	if n > 0 {
		d.Txn = &event.Txn{LSID: lsid, Number: n, Index: ix, Last: last}
		d.Position.TxnIndex = ix
		d.Class, d.Field, d.Value, d.Reason = state.ClassPoison, "", "", "another event of its Mongo transaction was dead-lettered ("+ev+")"
	}
	return d
}

// seed records: transaction 1 whole (t1a..t1c, the last marked), a single
// event s1 outside transactions (earliest), transaction 2 without a last
// event (t2a, t2b), transaction 3 (t3a..t3c) with its middle entry closed
// as the old retry closed entries it had not applied.
func seed(d *dlDB) {
	d.record(
		dl("t1a", "payments", "p1", 100, 1, 0, false),
		dl("t1b", "payments", "p2", 100, 1, 1, false),
		dl("t1c", "fundsLedger", "l1", 100, 1, 2, true),
		dl("s1", "widgets", "w1", 90, 0, 0, false),
		dl("t2a", "payments", "p3", 110, 2, 0, false),
		dl("t2b", "payments", "p4", 110, 2, 1, false),
		dl("t3a", "users", "u1", 120, 3, 0, false),
		dl("t3b", "users", "u2", 120, 3, 1, false),
		dl("t3c", "users", "u3", 120, 3, 2, true),
	)
	d.exec(`UPDATE cdc.dead_letters SET status = 'retried' WHERE event_id = 't3b'`)
}

func TestSelectOpenExpandsToWholeTransactions(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	seed(d)
	cases := []struct {
		name  string
		f     state.DeadLetterFilter
		want  []string
		added []string
	}{
		{"one document of a transaction", state.DeadLetterFilter{Collection: "payments", DocKey: "p1"}, []string{"t1a", "t1b", "t1c"}, []string{"t1b", "t1c"}},
		{"the last entry by id", state.DeadLetterFilter{IDs: d.ids("t1c")}, []string{"t1a", "t1b", "t1c"}, []string{"t1a", "t1b"}},
		{"the transaction by id", state.DeadLetterFilter{TxnID: txnID(1)}, []string{"t1a", "t1b", "t1c"}, nil},
		{"a collection outside transactions", state.DeadLetterFilter{Collection: "widgets"}, []string{"s1"}, nil},
		{"two selections in source order", state.DeadLetterFilter{IDs: d.ids("t2a", "s1")}, []string{"s1", "t2a", "t2b"}, []string{"t2b"}},
		{"closed parts are not expanded into", state.DeadLetterFilter{DocKey: "u1"}, []string{"t3a", "t3c"}, []string{"t3c"}},
		{"all open, source order", state.DeadLetterFilter{All: true}, []string{"s1", "t1a", "t1b", "t1c", "t2a", "t2b", "t3a", "t3c"}, nil},
		{"nothing matches", state.DeadLetterFilter{Collection: "nope"}, []string{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := state.SelectOpen(d.ctx, d.pool, tc.f, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := events(sel.Entries); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("selected %v, want %v", got, tc.want)
			}
			if got, want := added(sel), d.ids(tc.added...); !reflect.DeepEqual(got, want) {
				t.Fatalf("added %v, want %v (%v)", got, want, tc.added)
			}
			for _, e := range sel.Entries {
				if e.Event != nil {
					t.Fatalf("events read without withEvents")
				}
			}
		})
	}
	t.Run("refusals", func(t *testing.T) {
		if _, err := state.SelectOpen(d.ctx, d.pool, state.DeadLetterFilter{}, false); !errors.Is(err, state.ErrUnnamed) {
			t.Fatalf("unnamed filter: %v", err)
		}
		if _, err := state.SelectOpen(d.ctx, d.pool, state.DeadLetterFilter{All: true, Status: state.StatusDropped}, false); err == nil {
			t.Fatal("a selection of dropped entries for a retry was accepted")
		}
	})
}

func TestTxnGaps(t *testing.T) {
	t.Parallel()
	part := func(id int64, txn string, ix int, last bool) state.DeadLetter {
		i := ix
		return state.DeadLetter{ID: id, TxnID: txn, TxnIndex: &i, TxnLast: last, Status: state.StatusOpen}
	}
	single := state.DeadLetter{ID: 99}
	cases := []struct {
		name    string
		entries []state.DeadLetter
		want    map[string][]int // txn -> missing
		last    map[string]int
	}{
		{"no transactions", []state.DeadLetter{single}, map[string][]int{}, nil},
		{"whole", []state.DeadLetter{part(1, "a", 0, false), part(2, "a", 1, false), part(3, "a", 2, true), single}, map[string][]int{}, nil},
		{"whole out of order", []state.DeadLetter{part(3, "a", 2, true), part(1, "a", 0, false), part(2, "a", 1, false)}, map[string][]int{}, nil},
		{"one event, last", []state.DeadLetter{part(1, "a", 0, true)}, map[string][]int{}, nil},
		{"middle missing", []state.DeadLetter{part(1, "a", 0, false), part(3, "a", 2, true)}, map[string][]int{"a": {1}}, map[string]int{"a": 2}},
		{"first missing", []state.DeadLetter{part(2, "a", 1, false), part(3, "a", 2, true)}, map[string][]int{"a": {0}}, map[string]int{"a": 2}},
		{"no last", []state.DeadLetter{part(1, "a", 0, false), part(2, "a", 1, false)}, map[string][]int{"a": {}}, map[string]int{"a": -1}},
		{"no last and a hole", []state.DeadLetter{part(1, "a", 0, false), part(3, "a", 2, false)}, map[string][]int{"a": {1}}, map[string]int{"a": -1}},
		{"two transactions, one whole", []state.DeadLetter{part(1, "a", 0, false), part(2, "a", 1, true), part(5, "b", 1, true)},
			map[string][]int{"b": {0}}, map[string]int{"b": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gaps := state.TxnGaps(tc.entries)
			got := map[string][]int{}
			for _, g := range gaps {
				got[g.TxnID] = g.Missing
				if g.Last != tc.last[g.TxnID] {
					t.Errorf("%s: last %d, want %d", g.TxnID, g.Last, tc.last[g.TxnID])
				}
				for i := 1; i < len(g.Parts); i++ {
					if g.Parts[i-1].Index > g.Parts[i].Index {
						t.Errorf("%s: parts not in index order: %+v", g.TxnID, g.Parts)
					}
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("gaps %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSelectRetryReportsIncompleteTransactions(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	seed(d)
	sel, err := state.SelectRetry(d.ctx, d.pool, state.DeadLetterFilter{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range sel.Entries {
		if string(e.Event) != `{"id": "`+e.EventID+`"}` {
			t.Fatalf("entry %s event %s", e.EventID, e.Event)
		}
	}
	if len(sel.Gaps) != 2 {
		t.Fatalf("gaps %+v, want transactions 2 and 3", sel.Gaps)
	}
	g2, g3 := sel.Gaps[0], sel.Gaps[1]
	if g2.TxnID != txnID(2) || g2.Last != -1 || len(g2.Parts) != 2 || len(g2.Closed) != 0 {
		t.Fatalf("transaction 2: %+v", g2)
	}
	if g3.TxnID != txnID(3) || g3.Last != 2 || !reflect.DeepEqual(g3.Missing, []int{1}) || len(g3.Parts) != 2 ||
		len(g3.Closed) != 1 || g3.Closed[0].ID != d.id("t3b") || g3.Closed[0].Status != state.StatusRetried {
		t.Fatalf("transaction 3: %+v", g3)
	}
	msg := g3.String()
	for _, want := range []string{txnID(3), fmt.Sprint(d.id("t3a")), fmt.Sprint(d.id("t3c")), "missing indexes [1] of 0..2", "is retried"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	if !strings.Contains(g2.String(), "no entry is its last event") {
		t.Errorf("%q does not say the last event is missing", g2.String())
	}

	whole, err := state.SelectRetry(d.ctx, d.pool, state.DeadLetterFilter{DocKey: "p2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(whole.Gaps) != 0 || !reflect.DeepEqual(events(whole.Entries), []string{"t1a", "t1b", "t1c"}) {
		t.Fatalf("transaction 1: %+v", whole)
	}
}

func TestMarkRetriedClosesOnlyWhatApplied(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	seed(d)
	mark := func(outs ...state.RetryOutcome) error {
		return pgx.BeginFunc(d.ctx, d.pool, func(tx pgx.Tx) error { return state.MarkRetried(d.ctx, tx, outs) })
	}
	if err := mark(
		state.RetryOutcome{ID: d.id("t1a"), Outcome: state.OutcomeApplied},
		state.RetryOutcome{ID: d.id("t1b"), Outcome: state.OutcomeSkipped},
		state.RetryOutcome{ID: d.id("t2a"), Outcome: state.OutcomeIncomplete, Class: state.ClassIncomplete, Reason: "missing index 2"},
	); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ev     string
		status state.Status
		at     bool
		hist   []string
	}{
		{"t1a", state.StatusRetried, true, []string{"dead_lettered/dead_lettered", "retried/applied"}},
		{"t1b", state.StatusRetried, true, []string{"dead_lettered/dead_lettered", "retried/skipped"}},
		{"t1c", state.StatusOpen, false, []string{"dead_lettered/dead_lettered"}},
		{"t2a", state.StatusOpen, false, []string{"dead_lettered/dead_lettered", "retried/incomplete"}},
	} {
		st, reason, at := d.status(tc.ev)
		if st != tc.status || reason != "" || at != tc.at {
			t.Errorf("%s: status %s reason %q at %v, want %s, no reason, at %v", tc.ev, st, reason, at, tc.status, tc.at)
		}
		h, err := state.DeadLetterHistory(d.ctx, d.pool, d.id(tc.ev))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range h {
			got = append(got, string(a.Action)+"/"+string(a.Outcome))
		}
		if !reflect.DeepEqual(got, tc.hist) {
			t.Errorf("%s: history %v, want %v", tc.ev, got, tc.hist)
		}
		if tc.ev == "t2a" && (h[1].Class != state.ClassIncomplete || h[1].Reason != "missing index 2") {
			t.Errorf("incomplete attempt %+v", h[1])
		}
	}

	// An entry closed meanwhile (a concurrent drop) is not closed again:
	// the whole mark fails and its transaction rolls back.
	d.exec(`UPDATE cdc.dead_letters SET status = 'dropped' WHERE event_id = 't1c'`)
	err := mark(state.RetryOutcome{ID: d.id("s1"), Outcome: state.OutcomeApplied}, state.RetryOutcome{ID: d.id("t1c"), Outcome: state.OutcomeApplied})
	if !errors.Is(err, state.ErrDeadLetterChanged) || !strings.Contains(err.Error(), fmt.Sprint(d.id("t1c"))) {
		t.Fatalf("closing a dropped entry: %v", err)
	}
	if st, _, _ := d.status("s1"); st != state.StatusOpen {
		t.Fatalf("s1 is %s after a failed mark", st)
	}
	if err := mark(state.RetryOutcome{ID: d.id("s1"), Outcome: state.OutcomeDeadLettered}); err == nil {
		t.Fatal("MarkRetried accepted a dead-lettered outcome (RecordDeadLetters writes those)")
	}
	if err := mark(state.RetryOutcome{ID: d.id("s1")}); err == nil {
		t.Fatal("MarkRetried accepted an entry without an outcome")
	}
}

func TestDropNeedsAReasonAndDropsWholeTransactions(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	seed(d)
	for _, reason := range []string{"", "  \t"} {
		if _, err := state.DropDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{DocKey: "p2"}, reason); !errors.Is(err, state.ErrReasonRequired) {
			t.Fatalf("drop with reason %q: %v", reason, err)
		}
	}
	if _, err := state.DropDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{}, "why"); !errors.Is(err, state.ErrUnnamed) {
		t.Fatalf("drop naming nothing: %v", err)
	}
	if n := count(d, `SELECT count(*) FROM cdc.dead_letters WHERE status = 'dropped'`); n != 0 {
		t.Fatalf("a refused drop dropped %d entries", n)
	}
	sel, err := state.DropDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{DocKey: "p2"}, "duplicate of payment p9")
	if err != nil {
		t.Fatal(err)
	}
	if got := events(sel.Entries); !reflect.DeepEqual(got, []string{"t1a", "t1b", "t1c"}) {
		t.Fatalf("dropped %v", got)
	}
	if !reflect.DeepEqual(added(sel), d.ids("t1a", "t1c")) {
		t.Fatalf("added %v", sel.Added)
	}
	for _, e := range sel.Entries {
		if e.Status != state.StatusDropped || e.StatusReason != "duplicate of payment p9" || e.StatusAt == nil {
			t.Fatalf("returned %+v", e)
		}
		if e.Class != state.ClassPoison || !strings.Contains(e.Reason, e.EventID) {
			t.Fatalf("drop rewrote the original class or reason: %+v", e)
		}
		h, err := state.DeadLetterHistory(d.ctx, d.pool, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 2 || h[1].Action != state.ActionDropped || h[1].Outcome != state.OutcomeDropped || h[1].Reason != "duplicate of payment p9" {
			t.Fatalf("history of %s: %+v", e.EventID, h)
		}
	}
	if st, _, _ := d.status("s1"); st != state.StatusOpen {
		t.Fatal("a drop of one transaction closed another entry")
	}
	again, err := state.DropDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{DocKey: "p2"}, "again")
	if err != nil || len(again.Entries) != 0 {
		t.Fatalf("second drop: %+v, %v", again, err)
	}
	if n := count(d, `SELECT count(*) FROM cdc.dead_letter_attempts WHERE action = 'dropped'`); n != 3 {
		t.Fatalf("%d drop history rows, want 3", n)
	}
	if _, err := state.DropDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{All: true, Status: state.StatusRetried}, "x"); err == nil {
		t.Fatal("a drop of retried entries was accepted")
	}
}

func TestReopen(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	seed(d)
	if _, err := state.DropDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{TxnID: txnID(1)}, "operator error"); err != nil {
		t.Fatal(err)
	}
	if _, err := state.ReopenDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{IDs: d.ids("t1b")}, ""); !errors.Is(err, state.ErrReasonRequired) {
		t.Fatalf("reopen without a reason: %v", err)
	}
	if _, err := state.ReopenDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{All: true, Status: state.StatusOpen}, "x"); err == nil {
		t.Fatal("reopen of open entries was accepted")
	}
	// The dry run sees what the reopen will do.
	dry, err := state.SelectClosed(d.ctx, d.pool, state.DeadLetterFilter{IDs: d.ids("t1b")})
	if err != nil {
		t.Fatal(err)
	}
	sel, err := state.ReopenDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{IDs: d.ids("t1b")}, "the payment is real")
	if err != nil {
		t.Fatal(err)
	}
	if got := events(sel.Entries); !reflect.DeepEqual(got, []string{"t1a", "t1b", "t1c"}) || !reflect.DeepEqual(events(dry.Entries), got) {
		t.Fatalf("reopened %v (dry run %v)", got, events(dry.Entries))
	}
	for _, ev := range []string{"t1a", "t1b", "t1c"} {
		st, reason, at := d.status(ev)
		if st != state.StatusOpen || reason != "the payment is real" || !at {
			t.Fatalf("%s: %s %q %v", ev, st, reason, at)
		}
		h, err := state.DeadLetterHistory(d.ctx, d.pool, d.id(ev))
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 3 || h[2].Action != state.ActionReopened || h[2].Outcome != state.OutcomeOpen || h[2].Reason != "the payment is real" {
			t.Fatalf("history of %s: %+v", ev, h)
		}
	}
	// A retried entry reopens too; narrowing to dropped ones leaves it.
	none, err := state.ReopenDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{IDs: d.ids("t3b"), Status: state.StatusDropped}, "x")
	if err != nil || len(none.Entries) != 0 {
		t.Fatalf("reopen of dropped t3b: %+v %v", none, err)
	}
	r, err := state.ReopenDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{IDs: d.ids("t3b"), Status: state.StatusRetried}, "was never applied")
	if err != nil || !reflect.DeepEqual(events(r.Entries), []string{"t3b"}) {
		t.Fatalf("reopen of retried t3b: %+v %v", r, err)
	}
	// Transaction 3 is whole again.
	rs, err := state.SelectRetry(d.ctx, d.pool, state.DeadLetterFilter{TxnID: txnID(3)})
	if err != nil || len(rs.Gaps) != 0 || len(rs.Entries) != 3 {
		t.Fatalf("transaction 3 after the reopen: %+v %v", rs, err)
	}
}

// TestHistoryKeepsTheOriginal: re-recording an entry (a retry that failed
// again with another class) keeps its first class, field and reason; the
// history lists every attempt in the order it happened.
func TestHistoryKeepsTheOriginal(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	first := dl("l1-insert", "fundsLedger", "l1", 100, 0, 0, false)
	d.record(first)
	again := first
	again.Class, again.Field, again.Value, again.Reason = state.ClassParked, "", "", "parked: document fundsLedger l1 has an earlier open dead letter"
	d.record(again)
	id := d.id("l1-insert")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(pgx.BeginFunc(d.ctx, d.pool, func(tx pgx.Tx) error {
		return state.MarkRetried(d.ctx, tx, []state.RetryOutcome{{ID: id, Outcome: state.OutcomeApplied}})
	}))
	_, err := state.ReopenDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{IDs: []int64{id}}, "applied to the wrong account")
	must(err)
	_, err = state.DropDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{IDs: []int64{id}}, "booked by hand")
	must(err)

	e, err := state.GetDeadLetter(d.ctx, d.pool, id)
	must(err)
	if e.Class != state.ClassRejected || e.Field != "amount" || e.Value != "-1" || e.Reason != first.Reason || e.Attempts != 2 {
		t.Fatalf("entry after its attempts: %+v", e)
	}
	if e.Status != state.StatusDropped || e.StatusReason != "booked by hand" || string(e.Event) != `{"id": "l1-insert"}` {
		t.Fatalf("entry status or event: %+v", e)
	}
	h, err := state.DeadLetterHistory(d.ctx, d.pool, id)
	must(err)
	type row struct {
		action  state.Action
		outcome state.Outcome
		class   state.Class
		reason  string
	}
	var got []row
	for i, a := range h {
		got = append(got, row{a.Action, a.Outcome, a.Class, a.Reason})
		if i > 0 && (a.ID <= h[i-1].ID || a.At.Before(h[i-1].At)) {
			t.Fatalf("history out of order: %+v", h)
		}
	}
	want := []row{
		{state.ActionDeadLettered, state.OutcomeDeadLettered, state.ClassRejected, first.Reason},
		{state.ActionRetried, state.OutcomeDeadLettered, state.ClassParked, again.Reason},
		{state.ActionRetried, state.OutcomeApplied, "", ""},
		{state.ActionReopened, state.OutcomeOpen, "", "applied to the wrong account"},
		{state.ActionDropped, state.OutcomeDropped, "", "booked by hand"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("history\n got %+v\nwant %+v", got, want)
	}
	if h[0].Field != "amount" || h[0].Value != "-1" {
		t.Fatalf("first attempt lost its field: %+v", h[0])
	}
}

func TestListAndGet(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	seed(d)
	cases := []struct {
		name string
		f    state.DeadLetterFilter
		want []string
	}{
		{"any status, by id", state.DeadLetterFilter{}, []string{"t1a", "t1b", "t1c", "s1", "t2a", "t2b", "t3a", "t3b", "t3c"}},
		{"open", state.DeadLetterFilter{Status: state.StatusOpen}, []string{"t1a", "t1b", "t1c", "s1", "t2a", "t2b", "t3a", "t3c"}},
		{"retried", state.DeadLetterFilter{Status: state.StatusRetried}, []string{"t3b"}},
		{"collection and limit", state.DeadLetterFilter{Collection: "payments", Limit: 2}, []string{"t1a", "t1b"}},
		{"document", state.DeadLetterFilter{Collection: "users", DocKey: "u2"}, []string{"t3b"}},
		{"transaction", state.DeadLetterFilter{TxnID: txnID(2)}, []string{"t2a", "t2b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es, err := state.ListDeadLetters(d.ctx, d.pool, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := events(es); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("listed %v, want %v", got, tc.want)
			}
		})
	}
	es, err := state.ListDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{TxnID: txnID(1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(es[2])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"txn_id":"` + txnID(1) + `"`, `"txn_index":2`, `"txn_last":true`, `"cluster_time":{"t":100,"i":1}`, `"error_class":"poison"`, `"status":"open"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	if strings.Contains(string(b), `"event"`) {
		t.Errorf("a listed entry carries its event: %s", b)
	}
	single, err := state.GetDeadLetter(d.ctx, d.pool, d.id("s1"))
	if err != nil {
		t.Fatal(err)
	}
	if single.TxnID != "" || single.TxnIndex != nil || single.ClusterTime == nil || single.ClusterTime.T != 90 {
		t.Fatalf("single event: %+v", single)
	}
	if _, err := state.GetDeadLetter(d.ctx, d.pool, 999999); !errors.Is(err, state.ErrNoDeadLetter) {
		t.Fatalf("get of a missing id: %v", err)
	}
	if _, err := state.DeadLetterHistory(d.ctx, d.pool, 999999); !errors.Is(err, state.ErrNoDeadLetter) {
		t.Fatalf("history of a missing id: %v", err)
	}
}

func count(d *dlDB, sql string) int {
	d.t.Helper()
	var n int
	if err := d.pool.QueryRow(d.ctx, sql).Scan(&n); err != nil {
		d.t.Fatal(err)
	}
	return n
}

// TestDeadLetterStream: an entry records the stream its sequence belongs
// to (with lanes every lane's stream numbers its messages from 1); the
// stream and the sequence stay a pair when the entry is recorded again
// (a retry, which reads no stream; a redelivery); an entry recorded
// without a stream (before streams were) reads as "" (the default stream)
// and keeps its NULL when a later recording names one.
func TestDeadLetterStream(t *testing.T) {
	t.Parallel()
	d := newDLDB(t)
	laned := dl("in-lane", "payments", "p1", 100, 0, 0, false)
	laned.Stream = "CDC_payments"
	other := dl("other-lane", "users", "u1", 100, 0, 0, false) // the same sequence in another lane's stream
	other.Stream = "CDC_users"
	old := dl("before-streams", "widgets", "w1", 7, 0, 0, false)
	noSeq := dl("no-seq", "widgets", "w2", 0, 0, 0, false)
	noSeq.Stream = "CDC_widgets"
	d.record(laned, other, old, noSeq)

	retried := laned
	retried.Stream, retried.StreamSeq = "", 555 // dlq retry: no stream, the entry's sequence
	redelivered := old
	redelivered.Stream, redelivered.StreamSeq = "CDC_widgets", 42
	late := noSeq
	late.StreamSeq = 9
	d.record(retried, redelivered, late)

	for _, tc := range []struct {
		ev     string
		stream string
		seq    int64
	}{
		{"in-lane", "CDC_payments", 100},
		{"other-lane", "CDC_users", 100},
		{"before-streams", "", 7},
		{"no-seq", "CDC_widgets", 9},
	} {
		e, err := state.GetDeadLetter(d.ctx, d.pool, d.id(tc.ev))
		if err != nil {
			t.Fatal(err)
		}
		if e.Stream != tc.stream || e.StreamSeq != tc.seq {
			t.Errorf("%s: stream %q sequence %d, want %q %d", tc.ev, e.Stream, e.StreamSeq, tc.stream, tc.seq)
		}
	}
	if n := count(d, `SELECT count(*) FROM cdc.dead_letters WHERE stream_seq IS NULL AND stream IS NOT NULL`); n != 0 {
		t.Fatalf("%d entries name a stream without a sequence", n)
	}
	es, err := state.ListDeadLetters(d.ctx, d.pool, state.DeadLetterFilter{IDs: d.ids("in-lane", "before-streams")})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 {
		t.Fatalf("listed %d entries, want 2", len(es))
	}
	b, err := json.Marshal(es)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"stream":"CDC_payments","stream_seq":100`) || strings.Count(string(b), `"stream":`) != 1 {
		t.Fatalf("listed JSON: %s", b)
	}
}
