package sink_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/sink"
)

// The applier's decisions (partition, park, poison isolation, the hooks of
// replays and retries), each through the one entry point, Apply of a
// NewBatch, against a migrated Postgres and no bus.

// newApplyEnv is newEnv without the bus: the applier needs only Postgres.
func newApplyEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	pool, set := migratedDB(t, ctx)
	return &env{t: t, ctx: ctx, pool: pool, set: set, ct: uint32(time.Now().Unix())}
}

// raws turns events into stream messages, numbered from seq.
func (e *env) raws(seq uint64, evs ...*event.Event) []sink.Raw {
	e.t.Helper()
	out := make([]sink.Raw, len(evs))
	for i, ev := range evs {
		data, err := ev.Marshal()
		if err != nil {
			e.t.Fatal(err)
		}
		out[i] = sink.Raw{Seq: seq + uint64(i), Data: data}
	}
	return out
}

// user is an insert of a user document; a poison one has an email too
// large for its index (SQLSTATE 54000): it transforms, and only Postgres
// refuses it, when it is written.
func (e *env) user(id bson.ObjectID, poison bool, ct event.ClusterTime, txn *event.Txn) *event.Event {
	email := id.Hex() + "@example.com"
	if poison {
		// Random text: a repeated one compresses below the btree limit.
		buf := make([]byte, 4608)
		if _, err := rand.Read(buf); err != nil {
			e.t.Fatal(err)
		}
		email = hex.EncodeToString(buf) + email
	}
	return e.ev("users", e.userDoc(id, email), ct, txn)
}

// hasUser reports whether user id has a row.
func (e *env) hasUser(id bson.ObjectID) bool {
	return e.count(`SELECT count(*) FROM id_map m JOIN users u ON u.id = m.new_id
		WHERE m.collection = 'users' AND m.legacy_object_id = $1`, id.Hex()) == 1
}

// deadLetterClass is the class of event id's dead letter ("" without one).
func (e *env) deadLetterClass(id string) string {
	var cls string
	err := e.pool.QueryRow(e.ctx, `SELECT error_class FROM cdc.dead_letters WHERE event_id = $1`, id).Scan(&cls)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		e.t.Fatal(err)
	}
	return cls
}

// checkOutcomes fails unless res gives every event of want its outcome.
func checkOutcomes(t *testing.T, res sink.Result, want map[*event.Event]string) {
	t.Helper()
	for ev, outcome := range want {
		if got := res.Outcomes[ev.ID]; got != outcome {
			t.Errorf("event %s (%s): outcome %q, want %q", ev.ID, ev.Source.Coll, got, outcome)
		}
	}
}

// One batch, one transaction: the events that are poison (alone, or as
// part of a Mongo transaction) are dead-lettered and the rest commits; a
// transaction not whole in the batch is not applied; an event rejected
// before Postgres holds its document's later events in the batch; a
// missing parent under policy wait waits.
func TestApplyPartitionsTheBatch(t *testing.T) {
	e := newApplyEnv(t)
	a := sink.NewApplier(e.pool, e.set, "", "CDC")
	oversize := func(ev *event.Event) *event.Event { ev.Oversize = 20 << 20; return ev }
	for _, c := range []struct {
		name string
		// batch returns the events and each one's expected outcome;
		// rows are the users expected to have a row afterwards (true)
		// or not (false).
		batch func() ([]*event.Event, map[*event.Event]string, map[bson.ObjectID]bool)
		class map[int]string // dead-letter class by event index
	}{
		{name: "a poison event is dead-lettered alone, the rest commits",
			batch: func() ([]*event.Event, map[*event.Event]string, map[bson.ObjectID]bool) {
				g1, bad, g2 := bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID()
				evs := []*event.Event{e.user(g1, false, e.next(), nil), e.user(bad, true, e.next(), nil), e.user(g2, false, e.next(), nil)}
				return evs, map[*event.Event]string{evs[0]: sink.OutcomeApplied, evs[1]: sink.OutcomeDeadLettered, evs[2]: sink.OutcomeApplied},
					map[bson.ObjectID]bool{g1: true, bad: false, g2: true}
			},
			class: map[int]string{1: "poison"}},
		{name: "a Mongo transaction with a poison event is dead-lettered whole",
			batch: func() ([]*event.Event, map[*event.Event]string, map[bson.ObjectID]bool) {
				t0, t1, g := bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID()
				ct := e.next()
				evs := []*event.Event{
					e.user(t0, false, ct, &event.Txn{LSID: "0123456789abcdef0123456789abcdef", Number: 7, Index: 0}),
					e.user(t1, true, ct, &event.Txn{LSID: "0123456789abcdef0123456789abcdef", Number: 7, Index: 1, Last: true}),
					e.user(g, false, e.next(), nil)}
				return evs, map[*event.Event]string{evs[0]: sink.OutcomeDeadLettered, evs[1]: sink.OutcomeDeadLettered, evs[2]: sink.OutcomeApplied},
					map[bson.ObjectID]bool{t0: false, t1: false, g: true}
			},
			class: map[int]string{0: "poison", 1: "poison"}},
		{name: "a transaction not whole in the batch is incomplete, not applied",
			batch: func() ([]*event.Event, map[*event.Event]string, map[bson.ObjectID]bool) {
				t0, g := bson.NewObjectID(), bson.NewObjectID()
				evs := []*event.Event{e.user(t0, false, e.next(), &event.Txn{LSID: "fedcba9876543210fedcba9876543210", Number: 3, Index: 0}),
					e.user(g, false, e.next(), nil)}
				return evs, map[*event.Event]string{evs[0]: sink.OutcomeIncomplete, evs[1]: sink.OutcomeApplied},
					map[bson.ObjectID]bool{t0: false, g: true}
			}},
		{name: "an event rejected before Postgres parks its document's later event",
			batch: func() ([]*event.Event, map[*event.Event]string, map[bson.ObjectID]bool) {
				d := bson.NewObjectID()
				evs := []*event.Event{oversize(e.user(d, false, e.next(), nil)), e.user(d, false, e.next(), nil)}
				evs[1].ID += ":again"
				return evs, map[*event.Event]string{evs[0]: sink.OutcomeDeadLettered, evs[1]: sink.OutcomeParked},
					map[bson.ObjectID]bool{d: false}
			},
			class: map[int]string{0: "rejected", 1: "parked"}},
		{name: "a missing parent under policy wait waits",
			batch: func() ([]*event.Event, map[*event.Event]string, map[bson.ObjectID]bool) {
				absent := bson.NewObjectID()
				evs := []*event.Event{e.ev("pointTransactions", e.pointDoc(bson.NewObjectID(), absent, "1"), e.next(), nil)}
				return evs, map[*event.Event]string{evs[0]: sink.OutcomeWaiting}, nil
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			evs, want, rows := c.batch()
			res, err := a.Apply(e.ctx, sink.NewBatch(e.set, e.raws(1, evs...)))
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			checkOutcomes(t, res, want)
			for id, has := range rows {
				if e.hasUser(id) != has {
					t.Errorf("user %s has a row: %v, want %v", id.Hex(), !has, has)
				}
			}
			for i, ev := range evs {
				if got := e.deadLetterClass(ev.ID); got != c.class[i] {
					t.Errorf("event %d (%s): dead letter class %q, want %q", i, ev.ID, got, c.class[i])
				}
			}
		})
	}
}

// A document with an open dead letter holds its later events (parked);
// never an earlier one, never in an unparked collection, and never the
// events a retry re-applies (Batch.Retrying).
func TestApplyParksBehindAnOpenDeadLetter(t *testing.T) {
	e := newApplyEnv(t)
	for _, c := range []struct {
		name     string
		unparked []string
		// earlier: the dead-lettered event comes after the batch's
		// event in source order.
		earlier  bool
		retrying bool
		want     string
	}{
		{name: "a later event parks", want: sink.OutcomeParked},
		{name: "an earlier event does not park", earlier: true, want: sink.OutcomeApplied},
		{name: "an unparked collection applies", unparked: []string{"users"}, want: sink.OutcomeApplied},
		{name: "a retry of the dead letter does not park behind it", retrying: true, want: sink.OutcomeApplied},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := sink.NewApplier(e.pool, e.set, "", "CDC")
			a.SetUnparked(c.unparked)
			d := bson.NewObjectID()
			first, second := e.next(), e.next()
			badAt, goodAt := first, second
			if c.earlier {
				badAt, goodAt = second, first
			}
			bad := e.user(d, true, badAt, nil)
			res, err := a.Apply(e.ctx, sink.NewBatch(e.set, e.raws(1, bad)))
			if err != nil {
				t.Fatalf("Apply of the poison event: %v", err)
			}
			checkOutcomes(t, res, map[*event.Event]string{bad: sink.OutcomeDeadLettered})
			good := e.user(d, false, goodAt, nil)
			good.ID += ":fixed"
			b := sink.NewBatch(e.set, e.raws(2, good))
			if c.retrying {
				b.Retrying = []string{bad.ID}
			}
			res, err = a.Apply(e.ctx, b)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			checkOutcomes(t, res, map[*event.Event]string{good: c.want})
			if has := e.hasUser(d); has != (c.want == sink.OutcomeApplied) {
				t.Errorf("user has a row: %v, want %v", has, !has)
			}
		})
	}
}

// Batch.Before runs first inside the transaction, again when poison
// isolation starts it over; Batch.After sees the final Result; an error
// from either commits nothing.
func TestApplyHooksRunInsideTheTransaction(t *testing.T) {
	e := newApplyEnv(t)
	a := sink.NewApplier(e.pool, e.set, "", "CDC")
	errHook := errors.New("hook refused (test)")
	for _, c := range []struct {
		name                  string
		poison                bool
		beforeErr, afterErr   error
		wantBefore, wantAfter int
		committed             bool
	}{
		{name: "clean batch", wantBefore: 1, wantAfter: 1, committed: true},
		{name: "poison: Before again when isolation starts over", poison: true, wantBefore: 2, wantAfter: 1, committed: true},
		{name: "Before fails", beforeErr: errHook, wantBefore: 1, wantAfter: 0},
		{name: "After fails", afterErr: errHook, wantBefore: 1, wantAfter: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			good, bad := bson.NewObjectID(), bson.NewObjectID()
			evs := []*event.Event{e.user(good, false, e.next(), nil)}
			if c.poison {
				evs = append(evs, e.user(bad, true, e.next(), nil))
			}
			before, after := 0, 0
			b := sink.NewBatch(e.set, e.raws(1, evs...))
			b.Before = func(tx pgx.Tx) error {
				before++
				var n int
				if err := tx.QueryRow(e.ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
					return fmt.Errorf("Before cannot use its transaction: %w", err)
				}
				return c.beforeErr
			}
			b.After = func(ctx context.Context, tx pgx.Tx, res *sink.Result) error {
				after++
				if res.Outcomes[evs[0].ID] != sink.OutcomeApplied {
					t.Errorf("After sees outcome %q of the good event, want applied", res.Outcomes[evs[0].ID])
				}
				if c.poison && res.Outcomes[evs[1].ID] != sink.OutcomeDeadLettered {
					t.Errorf("After sees outcome %q of the poison event, want dead_lettered", res.Outcomes[evs[1].ID])
				}
				return c.afterErr
			}
			_, err := a.Apply(e.ctx, b)
			if c.committed != (err == nil) {
				t.Fatalf("Apply error %v, want committed %v", err, c.committed)
			}
			if err != nil && !errors.Is(err, errHook) {
				t.Fatalf("Apply error %v, want the hook's", err)
			}
			if before != c.wantBefore || after != c.wantAfter {
				t.Fatalf("Before ran %d times, After %d; want %d and %d", before, after, c.wantBefore, c.wantAfter)
			}
			if e.hasUser(good) != c.committed {
				t.Fatalf("good user has a row: %v, want %v", !c.committed, c.committed)
			}
			if dl := e.deadLetterClass(evs[len(evs)-1].ID); c.poison && dl != "poison" || !c.poison && dl != "" {
				t.Fatalf("dead letter class %q of the last event", dl)
			}
		})
	}
}

// Every event of a Mongo transaction dead-lettered together has a
// reason: the one that carries the cause has it, the others say their
// transaction was dead-lettered. A rejection before Postgres names its own
// event; poison met when the transaction is written is the whole unit's,
// recorded on its first event.
func TestApplyTransactionDeadLetterReasons(t *testing.T) {
	e := newApplyEnv(t)
	a := sink.NewApplier(e.pool, e.set, "", "CDC")
	const together = "another event of its Mongo transaction was dead-lettered: "
	for _, c := range []struct {
		name     string
		rejected bool // part 1 is rejected before Postgres, else poison when written
		want     [2]string
	}{
		{name: "rejected before Postgres", rejected: true, want: [2]string{together + "the change of document", "the change of document"}},
		{name: "poison when written", want: [2]string{"apply rows: ERROR: index row requires", together + "apply rows: ERROR: index row requires"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ct := e.next()
			lsid := fmt.Sprintf("%032x", ct.T)
			txn := func(ix int, last bool) *event.Txn { return &event.Txn{LSID: lsid, Number: 1, Index: ix, Last: last} }
			evs := []*event.Event{e.user(bson.NewObjectID(), false, ct, txn(0, false)), e.user(bson.NewObjectID(), !c.rejected, ct, txn(1, true))}
			if c.rejected {
				evs[1].Oversize = 20 << 20
			}
			if _, err := a.Apply(e.ctx, sink.NewBatch(e.set, e.raws(1, evs...))); err != nil {
				t.Fatal(err)
			}
			for i, ev := range evs {
				var reason string
				if err := e.pool.QueryRow(e.ctx, `SELECT reason FROM cdc.dead_letters WHERE event_id = $1`, ev.ID).Scan(&reason); err != nil {
					t.Fatalf("part %d: %v", i, err)
				}
				if !strings.HasPrefix(reason, c.want[i]) {
					t.Errorf("part %d: reason %.120q, want it to start %q", i, reason, c.want[i])
				}
			}
		})
	}
}
