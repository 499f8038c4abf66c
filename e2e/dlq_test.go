package e2e

// End-to-end tests of the operator's dead-letter commands (`cdc dlq`, the
// built binary against the replicator's real Postgres): a retry of one
// document of a dead-lettered Mongo transaction retries the whole
// transaction or refuses naming its parts; `retry --all` closes exactly
// what it applied; drop needs a reason and takes whole transactions;
// reopen; the history shows every attempt, and the first class, field and
// reason are never overwritten.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/dlq"
	"github.com/amanat/cdc/pkg/state"
)

// cliRun is one run of the cdc binary.
type cliRun struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r cliRun) String() string {
	return fmt.Sprintf("cdc %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, tail(r.stdout, 6000), tail(r.stderr, 3000))
}

// cdc runs the binary with args and -c cfgPath.
func (e *env) cdc(cfgPath string, args ...string) cliRun {
	e.t.Helper()
	cmd := exec.Command(cdcBinary, append(append([]string{}, args...), "-c", cfgPath)...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliRun{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		e.t.Fatalf("run cdc %v: %v", args, err)
	}
	return r
}

// cdcJSON runs the binary with --json, wants exit code want and decodes
// stdout into v.
func (e *env) cdcJSON(cfgPath string, want int, v any, args ...string) cliRun {
	e.t.Helper()
	r := e.cdc(cfgPath, append(args, "--json")...)
	if r.code != want {
		e.t.Fatalf("want exit %d: %s", want, r)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		e.t.Fatalf("decode the JSON of %s: %v", r, err)
	}
	return r
}

// inTxn runs fn in one Mongo multi-document transaction.
func (e *env) inTxn(fn func(sc context.Context) error) {
	e.t.Helper()
	sess, err := e.client.StartSession()
	must(e.t, err)
	defer sess.EndSession(e.ctx)
	_, err = sess.WithTransaction(e.ctx, func(sc context.Context) (any, error) { return nil, fn(sc) })
	must(e.t, err)
}

// dlOf is the only dead letter of (coll, key).
func (e *env) dlOf(coll string, key bson.ObjectID) dlq.Entry {
	e.t.Helper()
	es, err := dlq.List(e.ctx, e.pool, dlq.Filter{Collection: coll, DocKey: key.Hex()})
	must(e.t, err)
	if len(es) != 1 {
		e.t.Fatalf("%s %s has %d dead letters: %+v", coll, key.Hex(), len(es), es)
	}
	return es[0]
}

// original is what an entry was first recorded with.
type original struct {
	class         state.Class
	field, reason string
}

func originalOf(d dlq.Entry) original { return original{d.Class, d.Field, d.Reason} }

// attempts renders an entry's history as action/outcome/class lines.
func (e *env) attempts(id int64) []string {
	e.t.Helper()
	h, err := dlq.History(e.ctx, e.pool, id)
	must(e.t, err)
	return renderAttempts(h)
}

func renderAttempts(h []dlq.Attempt) []string {
	out := []string{}
	for _, a := range h {
		out = append(out, fmt.Sprintf("%s/%s/%s", a.Action, a.Outcome, a.Class))
	}
	return out
}

func (e *env) historyRows() int {
	return e.count(e.ctx, `SELECT count(*) FROM cdc.dead_letter_attempts`)
}

// rowXmin is the xmin of the row of (coll, key) in table ("" when there
// is none): rows written by one Postgres transaction share it.
func (e *env) rowXmin(table, coll string, key bson.ObjectID) string {
	e.t.Helper()
	var x string
	err := e.pool.QueryRow(e.ctx, fmt.Sprintf(`SELECT t.xmin::text FROM %s t JOIN id_map m ON m.new_id = t.id
		WHERE m.collection = $1 AND m.legacy_object_id = $2`, table), coll, key.Hex()).Scan(&x)
	if err != nil {
		return ""
	}
	return x
}

// TestDLQRetryDropReopenWholeTransactions: acceptance item 5 of "Nothing
// lost under any operational event" on the widgets test schema.
func TestDLQRetryDropReopenWholeTransactions(t *testing.T) {
	e := newEnv(t)
	_, err := e.pool.Exec(e.ctx, `ALTER TABLE widgets ADD CONSTRAINT widgets_qty_nonneg CHECK (qty >= 0);
		ALTER TABLE widgets ADD CONSTRAINT widgets_name_ok CHECK (name <> 'forbidden')`)
	must(t, err)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	e.runApp(cfg, app.Options{})
	cfgPath := e.writeConfig(cfg)
	l := newLoad(e, 51)
	widgets, gadgets := e.coll("widgets"), e.coll("gadgets")
	a, b, c, d, x, y := bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID()

	// Transaction 1: widget a refused by a CHECK that will be fixed, with
	// widget b and gadget c. Widget d alone and transaction 2 (widget x,
	// gadget y) are refused by a CHECK that stays.
	e.inTxn(func(sc context.Context) error {
		if _, err := widgets.InsertOne(sc, mcSet(l.doc("widgets", a, 1), "qty", int64(-5))); err != nil {
			return err
		}
		if _, err := widgets.InsertOne(sc, l.doc("widgets", b, 1)); err != nil {
			return err
		}
		_, err := gadgets.InsertOne(sc, l.doc("gadgets", c, 1))
		return err
	})
	e.mcInsert("widgets", mcSet(l.doc("widgets", d, 1), "name", "forbidden"))
	e.inTxn(func(sc context.Context) error {
		if _, err := widgets.InsertOne(sc, mcSet(l.doc("widgets", x, 1), "name", "forbidden")); err != nil {
			return err
		}
		_, err := gadgets.InsertOne(sc, l.doc("gadgets", y, 1))
		return err
	})
	e.mcEventually("six dead letters", func() string {
		if n := e.count(e.ctx, `SELECT count(*) FROM cdc.dead_letters WHERE status = 'open'`); n != 6 {
			return fmt.Sprintf("%d open dead letters", n)
		}
		return ""
	})
	da, db, dc, dd, dx, dy := e.dlOf("widgets", a), e.dlOf("widgets", b), e.dlOf("gadgets", c), e.dlOf("widgets", d), e.dlOf("widgets", x), e.dlOf("gadgets", y)
	t1, t2 := da.TxnID, dx.TxnID
	if t1 == "" || db.TxnID != t1 || dc.TxnID != t1 || t2 == "" || dy.TxnID != t2 || t1 == t2 || dd.TxnID != "" {
		t.Fatalf("transactions not recorded: a %q b %q c %q d %q x %q y %q", da.TxnID, db.TxnID, dc.TxnID, dd.TxnID, dx.TxnID, dy.TxnID)
	}
	if da.TxnIndex == nil || *da.TxnIndex != 0 || db.TxnIndex == nil || *db.TxnIndex != 1 || dc.TxnIndex == nil || *dc.TxnIndex != 2 || !dc.TxnLast || db.TxnLast {
		t.Fatalf("transaction 1 places: %+v %+v %+v", da, db, dc)
	}
	if da.Class != state.ClassPoison || !strings.Contains(da.Reason, "widgets_qty_nonneg") || !strings.Contains(db.Reason, "another event of its Mongo transaction") {
		t.Fatalf("transaction 1 reasons: %q / %q", da.Reason, db.Reason)
	}
	originals := map[int64]original{}
	for _, en := range []dlq.Entry{da, db, dc, dd, dx, dy} {
		originals[en.ID] = originalOf(en)
	}

	t.Run("list --json includes the transaction", func(t *testing.T) {
		e.t = t
		var es []map[string]any
		e.cdcJSON(cfgPath, 0, &es, "dlq", "list")
		txns := map[string]int{}
		for _, en := range es {
			if s, ok := en["txn_id"].(string); ok {
				txns[s]++
			}
		}
		if len(es) != 6 || txns[t1] != 3 || txns[t2] != 2 {
			t.Fatalf("list --json: %d entries, transactions %v", len(es), txns)
		}
	})

	t.Run("retry of one document retries its whole transaction", func(t *testing.T) {
		e.t = t
		var dry dlq.Report
		e.cdcJSON(cfgPath, 0, &dry, "dlq", "retry", "--collection", "widgets", "--doc", b.Hex(), "--dry-run")
		if dry.Selected != 3 || dry.Added != 2 || len(dry.Refused) != 0 {
			t.Fatalf("dry run: %+v", dry)
		}
		// Before the fix: every event of the transaction fails again and
		// stays open; nothing is applied, the first reasons stay.
		var rep dlq.Report
		e.cdcJSON(cfgPath, 1, &rep, "dlq", "retry", "--collection", "widgets", "--doc", b.Hex())
		if rep.Selected != 3 || rep.Added != 2 || rep.DeadLettered != 3 || rep.Closed != 0 || rep.Applied != 0 {
			t.Fatalf("retry before the fix: %+v", rep)
		}
		for _, en := range []dlq.Entry{da, db, dc} {
			got := e.dlOf(en.Collection, mustOID(t, en.DocKey))
			if got.Status != state.StatusOpen || got.Attempts != 2 || originalOf(got) != originals[en.ID] {
				t.Fatalf("after a failed retry: %+v", got)
			}
		}
		if h := e.attempts(db.ID); !reflect.DeepEqual(h, []string{"dead_lettered/dead_lettered/poison", "retried/dead_lettered/poison"}) {
			t.Fatalf("history of b: %v", h)
		}
		if e.rowXmin("widgets", "widgets", b) != "" {
			t.Fatal("widget b applied by a failed retry")
		}
	})

	t.Run("an incomplete transaction is refused, naming its parts", func(t *testing.T) {
		e.t = t
		// As the old retry did: b closed without being applied.
		_, err := e.pool.Exec(e.ctx, `UPDATE cdc.dead_letters SET status = 'retried' WHERE id = $1`, db.ID)
		must(t, err)
		before := e.historyRows()
		r := e.cdc(cfgPath, "dlq", "retry", "--collection", "widgets", "--doc", a.Hex())
		if r.code != 1 {
			t.Fatalf("want exit 1: %s", r)
		}
		for _, want := range []string{"refused", t1, fmt.Sprint(da.ID), fmt.Sprint(dc.ID), "missing indexes [1] of 0..2",
			fmt.Sprintf("entry %d (index 1) is retried", db.ID), "nothing was changed"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("the refusal does not say %q: %s", want, r)
			}
		}
		if n := e.historyRows(); n != before {
			t.Fatalf("a refused retry wrote %d history rows", n-before)
		}
		for _, en := range []dlq.Entry{da, dc} {
			if got := e.dlOf(en.Collection, mustOID(t, en.DocKey)); got.Status != state.StatusOpen || got.Attempts != 2 {
				t.Fatalf("a refused retry changed %+v", got)
			}
		}
		dry := e.cdc(cfgPath, "dlq", "retry", "--collection", "widgets", "--doc", a.Hex(), "--dry-run")
		if dry.code != 0 || !strings.Contains(dry.stdout, "would refuse") || !strings.Contains(dry.stdout, t1) {
			t.Fatalf("dry run of a refused retry: %s", dry)
		}
		var rep dlq.Report
		e.cdcJSON(cfgPath, 0, &rep, "dlq", "reopen", "--id", fmt.Sprint(db.ID), "--reason", "closed by the old retry without being applied")
		if rep.Reopened != 1 {
			t.Fatalf("reopen: %+v", rep)
		}
		if got := e.dlOf("widgets", b); got.Status != state.StatusOpen || got.StatusReason != "closed by the old retry without being applied" {
			t.Fatalf("reopened b: %+v", got)
		}
	})

	t.Run("retry --all after the fix closes exactly what applied", func(t *testing.T) {
		e.t = t
		_, err := e.pool.Exec(e.ctx, `ALTER TABLE widgets DROP CONSTRAINT widgets_qty_nonneg`)
		must(t, err)
		var rep dlq.Report
		e.cdcJSON(cfgPath, 1, &rep, "dlq", "retry", "--all")
		if rep.Selected != 6 || rep.Applied != 3 || rep.DeadLettered != 3 || rep.Closed != 3 || rep.Incomplete != 0 {
			t.Fatalf("retry --all: %+v", rep)
		}
		for _, en := range []dlq.Entry{da, db, dc} {
			if got := e.dlOf(en.Collection, mustOID(t, en.DocKey)); got.Status != state.StatusRetried || got.StatusAt == nil || got.StatusReason != "" {
				t.Fatalf("applied but not closed: %+v", got)
			}
		}
		for _, en := range []dlq.Entry{dd, dx, dy} {
			if got := e.dlOf(en.Collection, mustOID(t, en.DocKey)); got.Status != state.StatusOpen || got.Attempts != 2 {
				t.Fatalf("failed again but not open: %+v", got)
			}
		}
		xa, xb, xc := e.rowXmin("widgets", "widgets", a), e.rowXmin("widgets", "widgets", b), e.rowXmin("gadgets", "gadgets", c)
		if xa == "" || xa != xb || xa != xc {
			t.Fatalf("transaction 1 not applied by one Postgres transaction: xmin %q %q %q", xa, xb, xc)
		}
		if h := e.attempts(db.ID); !reflect.DeepEqual(h, []string{"dead_lettered/dead_lettered/poison", "retried/dead_lettered/poison", "reopened/open/", "retried/applied/"}) {
			t.Fatalf("history of b: %v", h)
		}
	})

	t.Run("drop needs a reason and takes the whole transaction", func(t *testing.T) {
		e.t = t
		before := e.historyRows()
		if r := e.cdc(cfgPath, "dlq", "drop", "--collection", "gadgets", "--doc", y.Hex()); r.code != 2 || !strings.Contains(r.stderr, "--reason") {
			t.Fatalf("drop without a reason: %s", r)
		}
		if r := e.cdc(cfgPath, "dlq", "drop", "--collection", "gadgets", "--doc", y.Hex(), "--reason", " "); r.code != 2 {
			t.Fatalf("drop with a blank reason: %s", r)
		}
		if e.historyRows() != before || e.dlOf("gadgets", y).Status != state.StatusOpen {
			t.Fatal("a refused drop changed something")
		}
		r := e.cdc(cfgPath, "dlq", "drop", "--collection", "gadgets", "--doc", y.Hex(), "--reason", "test transaction, never real")
		if r.code != 0 || !strings.Contains(r.stdout, "dropped 2 dead letters") || !strings.Contains(r.stdout, fmt.Sprintf("+ entries %d: the rest of Mongo transaction %s", dx.ID, t2)) {
			t.Fatalf("drop of part of a transaction: %s", r)
		}
		for _, en := range []dlq.Entry{dx, dy} {
			if got := e.dlOf(en.Collection, mustOID(t, en.DocKey)); got.Status != state.StatusDropped || got.StatusReason != "test transaction, never real" || got.StatusAt == nil {
				t.Fatalf("dropped: %+v", got)
			}
		}
		if r := e.cdc(cfgPath, "dlq", "drop", "--id", fmt.Sprint(dd.ID), "--reason", "test document"); r.code != 0 {
			t.Fatalf("drop d: %s", r)
		}
		if r := e.cdc(cfgPath, "dlq", "list"); r.code != 0 || !strings.Contains(r.stdout, "0 dead letters") {
			t.Fatalf("open dead letters after the drops: %s", r)
		}
	})

	t.Run("reopen takes the whole transaction", func(t *testing.T) {
		e.t = t
		var rep dlq.Report
		e.cdcJSON(cfgPath, 0, &rep, "dlq", "reopen", "--collection", "gadgets", "--doc", y.Hex(), "--reason", "needed after all")
		if rep.Reopened != 2 || rep.Added != 1 {
			t.Fatalf("reopen: %+v", rep)
		}
		var es []dlq.Entry
		e.cdcJSON(cfgPath, 0, &es, "dlq", "list", "--txn", t2)
		if len(es) != 2 || es[0].Status != state.StatusOpen || es[1].Status != state.StatusOpen || es[0].StatusReason != "needed after all" {
			t.Fatalf("transaction 2 after the reopen: %+v", es)
		}
	})

	t.Run("the history shows every attempt; the first class and reason stay", func(t *testing.T) {
		e.t = t
		var h []dlq.Attempt
		e.cdcJSON(cfgPath, 0, &h, "dlq", "history", fmt.Sprint(dd.ID))
		if got := renderAttempts(h); !reflect.DeepEqual(got, []string{"dead_lettered/dead_lettered/poison", "retried/dead_lettered/poison", "dropped/dropped/"}) {
			t.Fatalf("history of d: %v", got)
		}
		if h[0].Reason != dd.Reason || !strings.Contains(h[1].Reason, "widgets_name_ok") || h[2].Reason != "test document" {
			t.Fatalf("history reasons of d: %+v", h)
		}
		var show dlq.Detail
		e.cdcJSON(cfgPath, 0, &show, "dlq", "show", fmt.Sprint(dx.ID))
		if got := renderAttempts(show.History); !reflect.DeepEqual(got, []string{"dead_lettered/dead_lettered/poison", "retried/dead_lettered/poison", "dropped/dropped/", "reopened/open/"}) {
			t.Fatalf("show x: history %v", got)
		}
		if show.Class != dx.Class || show.Reason != dx.Reason || show.TxnID != t2 || len(show.Event) == 0 {
			t.Fatalf("show x: %+v", show.Entry)
		}
		if r := e.cdc(cfgPath, "dlq", "history", fmt.Sprint(dd.ID)); r.code != 0 || !strings.Contains(r.stdout, "test document") {
			t.Fatalf("history table: %s", r)
		}
		for _, en := range []dlq.Entry{da, db, dc, dd, dx, dy} {
			if got := originalOf(e.dlOf(en.Collection, mustOID(t, en.DocKey))); got != originals[en.ID] {
				t.Fatalf("entry %d: first recorded %+v, now %+v", en.ID, originals[en.ID], got)
			}
		}
	})

	t.Run("a retried document applies normally again", func(t *testing.T) {
		e.t = t
		_, err := widgets.UpdateByID(e.ctx, b, bson.D{{Key: "$set", Value: bson.D{{Key: "qty", Value: int64(7)}}}, {Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}})
		must(t, err)
		e.mcEventually("the update of b applied", func() string {
			var qty int64
			err := e.pool.QueryRow(e.ctx, `SELECT w.qty FROM widgets w JOIN id_map m ON m.new_id = w.id WHERE m.collection = 'widgets' AND m.legacy_object_id = $1`, b.Hex()).Scan(&qty)
			if err != nil || qty != 7 {
				return fmt.Sprintf("qty %d (%v)", qty, err)
			}
			return ""
		})
		if n := e.count(e.ctx, fmt.Sprintf(`SELECT count(*) FROM cdc.dead_letters WHERE doc_key = '%s'`, b.Hex())); n != 1 {
			t.Fatalf("the update of a retried document was dead-lettered (%d entries)", n)
		}
	})
}

// TestDLQLedgerRetryKeepsOriginalClass: a fundsLedger (append-only)
// entry rejected for a missing parent, then its delete; `retry --all`
// before and after the parent arrives never rewrites the first class and
// reason of either entry (the example: the retry rewrote the
// ledger's dead letters to "parked"). After the fix the insert applies and
// closes; the delete is still an append-only violation and stays open.
func TestDLQLedgerRetryKeepsOriginalClass(t *testing.T) {
	e := newMoneyEnv(t)
	e.startMoney()
	cfg := e.config(e.nats.url(), e.dir)
	cfg.Transforms.Dir = ""
	cfgPath := e.writeConfig(cfg)
	user, ledger := bson.NewObjectID(), bson.NewObjectID()
	doc := mcSet(e.example("fundsLedger", "hold"), "_id", ledger)
	doc = mcSet(mcSet(doc, "purchaseRequestId", nil), "paymentId", nil)
	doc = mcSet(mcSet(doc, "userId", user), "idempotencyKey", "dlq-ledger-"+ledger.Hex())
	e.mcInsert("fundsLedger", doc)
	e.mcExpectDeadLetter("fundsLedger", ledger.Hex(), "rejected", "userId", "(policy reject)")
	e.mcDelete("fundsLedger", ledger.Hex())
	entries := func() []dlq.Entry {
		es, err := dlq.List(e.ctx, e.pool, dlq.Filter{Collection: "fundsLedger", DocKey: ledger.Hex()})
		must(t, err)
		return es
	}
	e.mcEventually("the delete dead-lettered", func() string {
		if n := len(entries()); n != 2 {
			return fmt.Sprintf("%d dead letters of the ledger entry", n)
		}
		return ""
	})
	first := entries()
	ins, del := first[0], first[1]
	if ins.Class != state.ClassRejected || ins.Field != "userId" || !strings.Contains(ins.Reason, "references users "+user.Hex()) {
		t.Fatalf("insert entry: %+v", ins)
	}
	if del.Class != state.ClassParked && del.Class != state.ClassViolation {
		t.Fatalf("delete entry: %+v", del)
	}
	check := func(when string, insStatus state.Status) {
		t.Helper()
		now := entries()
		if len(now) != 2 {
			t.Fatalf("%s: %d entries", when, len(now))
		}
		if originalOf(now[0]) != originalOf(ins) || originalOf(now[1]) != originalOf(del) {
			t.Fatalf("%s: the first class, field or reason was rewritten:\n insert %+v -> %+v\n delete %+v -> %+v",
				when, originalOf(ins), originalOf(now[0]), originalOf(del), originalOf(now[1]))
		}
		if now[0].Status != insStatus || now[1].Status != state.StatusOpen {
			t.Fatalf("%s: insert %s, delete %s", when, now[0].Status, now[1].Status)
		}
	}

	var rep dlq.Report
	e.cdcJSON(cfgPath, 1, &rep, "dlq", "retry", "--all")
	if rep.Selected != 2 || rep.DeadLettered != 2 || rep.Closed != 0 {
		t.Fatalf("retry before the parent: %+v", rep)
	}
	check("before the parent", state.StatusOpen)
	if h := e.attempts(ins.ID); !reflect.DeepEqual(h, []string{"dead_lettered/dead_lettered/rejected", "retried/dead_lettered/rejected"}) {
		t.Fatalf("history of the insert: %v", h)
	}

	e.mcInsert("users", mcSet(e.example("users", "minimal"), "_id", user))
	e.mcEventually("the user replicated", func() string {
		if e.mcUUID("users", user.Hex()) == "" || e.mcRow("users", "id", "users", user.Hex()) == nil {
			return "no users row"
		}
		return ""
	})
	rep = dlq.Report{}
	e.cdcJSON(cfgPath, 1, &rep, "dlq", "retry", "--all")
	if rep.Selected != 2 || rep.Applied != 1 || rep.DeadLettered != 1 || rep.Closed != 1 {
		t.Fatalf("retry after the parent: %+v", rep)
	}
	check("after the parent", state.StatusRetried)
	e.mcExpectRow("funds_ledger_entries", "fundsLedger", ledger.Hex(), map[string]string{"user_id": mcRef("users", user.Hex()), "entry_type": "hold"})
	hi, err := dlq.History(e.ctx, e.pool, ins.ID)
	must(t, err)
	if got := renderAttempts(hi); !reflect.DeepEqual(got, []string{"dead_lettered/dead_lettered/rejected", "retried/dead_lettered/rejected", "retried/applied/"}) {
		t.Fatalf("history of the insert: %v", got)
	}
	hd, err := dlq.History(e.ctx, e.pool, del.ID)
	must(t, err)
	if len(hd) != 3 || hd[2].Class != state.ClassViolation || !strings.Contains(hd[2].Reason, "append-only") {
		t.Fatalf("history of the delete: %+v", hd)
	}
}

func mustOID(t testing.TB, hex string) bson.ObjectID { return mcOID(t, hex) }
