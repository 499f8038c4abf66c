package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/dlq"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/sink"
)

// checksum is a digest of every replicated table, id_map and the version
// guard: two runs with equal checksums left Postgres in the same state.
func (e *env) checksum() string {
	e.t.Helper()
	var sum string
	err := e.pool.QueryRow(e.ctx, `SELECT md5(
		coalesce((SELECT string_agg(t::text, '|' ORDER BY t.id) FROM widgets t), '') ||
		coalesce((SELECT string_agg(t::text, '|' ORDER BY t.id) FROM gadgets t), '') ||
		coalesce((SELECT string_agg(m.collection || m.legacy_object_id || m.new_id, '|' ORDER BY 1) FROM id_map m), '') ||
		coalesce((SELECT string_agg(v.collection || v.doc_key || v.cluster_time || ':' || v.txn_index || v.deleted, '|' ORDER BY 1)
		          FROM cdc.doc_versions v), ''))`).Scan(&sum)
	must(e.t, err)
	return sum
}

// js connects a test client to the env's NATS.
func (e *env) js() jetstream.JetStream {
	e.t.Helper()
	nc, err := nats.Connect(e.nats.url())
	must(e.t, err)
	e.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	must(e.t, err)
	return js
}

// waitDrained waits until the sink consumer has acknowledged every message
// in the stream.
func (e *env) waitDrained(js jetstream.JetStream, consumer string) {
	e.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		info, err := js.Stream(e.ctx, "CDC")
		if err == nil {
			si, _ := info.Info(e.ctx)
			c, cerr := js.Consumer(e.ctx, "CDC", consumer)
			if cerr == nil && si != nil {
				ci, ierr := c.Info(e.ctx)
				if ierr == nil && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.AckFloor.Stream >= si.State.LastSeq {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatal("sink did not drain the stream within 2m")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDuplicatesAndFullReplayChangeNothing: every event delivered twice
// (copies with new message ids) and the whole stream replayed from
// sequence 1 leave Postgres identical to one clean apply.
func TestDuplicatesAndFullReplayChangeNothing(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	stop := e.runApp(cfg, app.Options{})
	must(t, newLoad(e, 11).run(e.ctx, 20000))
	e.waitExact(2 * time.Minute)
	js := e.js()
	e.waitDrained(js, cfg.Sink.Consumer)
	clean := e.checksum()

	// Copy every message with a new id (the sink must see real duplicates,
	// not ones JetStream dedups).
	stream, err := js.Stream(e.ctx, "CDC")
	must(t, err)
	si, err := stream.Info(e.ctx)
	must(t, err)
	last := si.State.LastSeq
	for seq := uint64(1); seq <= last; seq++ {
		m, err := stream.GetMsg(e.ctx, seq)
		must(t, err)
		copyMsg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
		copyMsg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dup-%d", seq))
		if _, err := js.PublishMsgAsync(copyMsg); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("duplicate publishes not acknowledged")
	}
	e.waitDrained(js, cfg.Sink.Consumer)
	if got := e.checksum(); got != clean {
		t.Fatalf("duplicates changed Postgres: %s -> %s", clean, got)
	}

	// Replay the whole stream from sequence 1: stop, forget the consumer
	// and the recorded position, start again.
	must(t, stop())
	must(t, stream.DeleteConsumer(e.ctx, cfg.Sink.Consumer))
	_, err = e.pool.Exec(e.ctx, `DELETE FROM cdc.sink_positions`)
	must(t, err)
	stop = e.runApp(cfg, app.Options{})
	time.Sleep(time.Second) // let the consumer be created
	e.waitDrained(js, cfg.Sink.Consumer)
	must(t, stop())
	if got := e.checksum(); got != clean {
		t.Fatalf("a full replay changed Postgres: %s -> %s", clean, got)
	}
	e.waitExact(time.Second)
	e.assertNoDoubleApply()
}

// TestCrashBetweenCommitAndAck: the sink dies after a commit and before
// its acknowledgements; the redelivered batch changes nothing.
func TestCrashBetweenCommitAndAck(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	var crashed atomic.Bool
	hooks := &sink.Hooks{AfterCommit: func(context.Context) error {
		if crashed.CompareAndSwap(false, true) {
			return errors.New("injected crash after commit")
		}
		return nil
	}}
	must(t, newLoad(e, 12).run(e.ctx, 500))
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	err := app.Run(ctx, cfg, config.RoleAll, e.log, app.Options{SinkHooks: hooks})
	cancel()
	if !errors.Is(err, sink.ErrHookAbort) {
		t.Fatalf("want the injected crash, got %v", err)
	}
	var applied int
	must(t, e.pool.QueryRow(e.ctx, `SELECT count(*) FROM cdc.test_apply_audit`).Scan(&applied))
	if applied == 0 {
		t.Fatal("the crash came before anything committed")
	}
	stop := e.runApp(cfg, app.Options{})
	e.waitExact(time.Minute)
	e.waitDrained(e.js(), cfg.Sink.Consumer)
	must(t, stop())
	e.assertNoDoubleApply()
}

// publishRaw puts a hand-made event on the change stream.
func (e *env) publishRaw(js jetstream.JetStream, ev *event.Event) {
	e.t.Helper()
	data, err := ev.Marshal()
	must(e.t, err)
	msg := &nats.Msg{Subject: "cdc." + ev.Source.DB + "." + ev.Source.Coll, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	_, err = js.PublishMsg(e.ctx, msg)
	must(e.t, err)
}

func gadgetEvent(e *env, op event.Op, id bson.ObjectID, t, i uint32, v int64) *event.Event {
	key, _ := bson.Marshal(bson.D{{Key: "_id", Value: id}})
	ev := &event.Event{V: 1, ID: fmt.Sprintf("t:%s:%d.%d", id.Hex(), t, i), Op: op, Key: key,
		Source: event.Source{DB: e.dbName, Coll: "gadgets", ClusterTime: event.ClusterTime{T: t, I: i}}}
	if op != event.OpDelete {
		w, _ := bson.ParseDecimal128("1.5")
		ev.Doc, _ = bson.Marshal(bson.D{{Key: "_id", Value: id}, {Key: "label", Value: fmt.Sprintf("v%d", v)},
			{Key: "specs", Value: bson.D{{Key: "weight", Value: w}}}, {Key: "active", Value: true}, {Key: "v", Value: v}})
	}
	return ev
}

// TestOutOfOrderNeverGoesBackwards: an older version delivered after a
// newer one, and an insert after its delete, are not applied.
func TestOutOfOrderNeverGoesBackwards(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	stop := e.runApp(cfg, app.Options{})
	js := e.js()
	a, b := bson.NewObjectID(), bson.NewObjectID()
	e.publishRaw(js, gadgetEvent(e, event.OpInsert, a, 100, 5, 2))  // newer first
	e.publishRaw(js, gadgetEvent(e, event.OpReplace, a, 100, 3, 1)) // then older
	e.publishRaw(js, gadgetEvent(e, event.OpInsert, b, 100, 1, 1))
	e.publishRaw(js, gadgetEvent(e, event.OpDelete, b, 100, 9, 0))
	e.publishRaw(js, gadgetEvent(e, event.OpInsert, b, 100, 8, 7)) // resurrection attempt
	e.waitDrained(js, cfg.Sink.Consumer)
	must(t, stop())
	var v int64
	must(t, e.pool.QueryRow(e.ctx, `SELECT g.v FROM gadgets g JOIN id_map m ON m.new_id = g.id WHERE m.legacy_object_id = $1`, a.Hex()).Scan(&v))
	if v != 2 {
		t.Fatalf("document regressed to v%d", v)
	}
	if n := e.count(e.ctx, fmt.Sprintf(`SELECT count(*) FROM gadgets g JOIN id_map m ON m.new_id = g.id WHERE m.legacy_object_id = '%s'`, b.Hex())); n != 0 {
		t.Fatal("a deleted document was resurrected by an older insert")
	}
}

// TestMongoTransactionsCommitWhole: a 5-operation Mongo transaction with
// a failure injected in the middle of its apply is invisible until it
// applies whole; a transaction spread over several getMore batches and one
// followed by an idle stream each commit in one Postgres transaction,
// promptly.
func TestMongoTransactionsCommitWhole(t *testing.T) {
	e := newEnv(t)
	_, err := e.pool.Exec(e.ctx, `
		CREATE TABLE cdc.test_xid (tbl text, id uuid, xid bigint);
		CREATE TABLE cdc.test_fail (on_ boolean);
		INSERT INTO cdc.test_fail VALUES (false);
		CREATE FUNCTION cdc.test_track() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
		  IF TG_TABLE_NAME = 'gadgets' AND (SELECT on_ FROM cdc.test_fail) THEN
		    RAISE EXCEPTION 'injected failure' USING ERRCODE = '40001';
		  END IF;
		  INSERT INTO cdc.test_xid VALUES (TG_TABLE_NAME, NEW.id, txid_current());
		  RETURN NEW;
		END $$;
		CREATE TRIGGER w_track AFTER INSERT OR UPDATE ON widgets FOR EACH ROW EXECUTE FUNCTION cdc.test_track();
		CREATE TRIGGER g_track AFTER INSERT OR UPDATE ON gadgets FOR EACH ROW EXECUTE FUNCTION cdc.test_track();`)
	must(t, err)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	cfg.Tailer.BatchSize = 2 // a 5-event transaction spans three getMore batches
	l := newLoad(e, 13)
	db := e.client.Database(e.dbName)
	seed := func() (ids []bson.ObjectID) {
		for i := 0; i < 3; i++ {
			id := bson.NewObjectID()
			_, err := db.Collection("widgets").InsertOne(e.ctx, l.doc("widgets", id, 1))
			must(t, err)
			ids = append(ids, id)
		}
		return ids
	}
	txn := func(ws []bson.ObjectID) []bson.ObjectID {
		sess, err := e.client.StartSession()
		must(t, err)
		defer sess.EndSession(e.ctx)
		g1, g2 := bson.NewObjectID(), bson.NewObjectID()
		_, err = sess.WithTransaction(e.ctx, func(sc context.Context) (any, error) {
			// payment update, two ledger inserts, points update, offer update
			if _, err := db.Collection("widgets").UpdateByID(sc, ws[0], bson.D{{Key: "$set", Value: bson.D{{Key: "qty", Value: int64(1)}}}, {Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}}); err != nil {
				return nil, err
			}
			if _, err := db.Collection("gadgets").InsertOne(sc, l.doc("gadgets", g1, 1)); err != nil {
				return nil, err
			}
			if _, err := db.Collection("gadgets").InsertOne(sc, l.doc("gadgets", g2, 1)); err != nil {
				return nil, err
			}
			if _, err := db.Collection("widgets").UpdateByID(sc, ws[1], bson.D{{Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}}); err != nil {
				return nil, err
			}
			_, err := db.Collection("widgets").UpdateByID(sc, ws[2], bson.D{{Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}})
			return nil, err
		}, options.Transaction())
		must(t, err)
		return []bson.ObjectID{g1, g2}
	}

	stop := e.runApp(cfg, app.Options{})
	ws := seed()
	e.waitExact(time.Minute)

	// 1. Failure injected in the middle of the apply (the gadgets writes).
	_, err = e.pool.Exec(e.ctx, `UPDATE cdc.test_fail SET on_ = true`)
	must(t, err)
	gs := txn(ws)
	time.Sleep(2 * time.Second)
	if c := e.count(e.ctx, `SELECT count(*) FROM widgets WHERE qty = 1`); c != 0 {
		t.Fatalf("part of a failing transaction is visible (%d rows)", c)
	}
	_, err = e.pool.Exec(e.ctx, `UPDATE cdc.test_fail SET on_ = false`)
	must(t, err)
	e.waitExact(time.Minute)
	assertOneXid(e, ws, gs)

	// 2. Spread over getMore batches, then an idle stream: prompt and whole.
	ws2 := seed()
	e.waitExact(time.Minute)
	start := time.Now()
	gs2 := txn(ws2)
	e.waitExact(30 * time.Second)
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a transaction followed by an idle stream took %s to apply", took)
	}
	assertOneXid(e, ws2, gs2)
	must(t, stop())
	e.assertNoDoubleApply()
}

// assertOneXid checks that the rows the Mongo transaction wrote were last
// written by one Postgres transaction.
func assertOneXid(e *env, ws, gs []bson.ObjectID) {
	e.t.Helper()
	var keys []string
	for _, id := range append(append([]bson.ObjectID{}, ws...), gs...) {
		keys = append(keys, id.Hex())
	}
	var xids int
	must(e.t, e.pool.QueryRow(e.ctx, `
		SELECT count(DISTINCT last.xid) FROM (
		  SELECT DISTINCT ON (x.id) x.id, x.xid FROM cdc.test_xid x
		  JOIN id_map m ON m.new_id = x.id WHERE m.legacy_object_id = ANY($1)
		  ORDER BY x.id, x.xid DESC) last`, keys).Scan(&xids))
	if xids != 1 {
		e.t.Fatalf("the Mongo transaction's rows were written by %d Postgres transactions", xids)
	}
}

// TestPoisonIsolatedParkedAndRetried: poison events in a batch of good
// ones are dead-lettered with their reason, the good ones commit, later
// events of a poisoned document are parked, and cdc dlq retry applies them
// in order once the cause is fixed.
func TestPoisonIsolatedParkedAndRetried(t *testing.T) {
	e := newEnv(t)
	_, err := e.pool.Exec(e.ctx, `ALTER TABLE widgets ADD CONSTRAINT widgets_qty_nonneg CHECK (qty >= 0)`)
	must(t, err)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	cfg.Sink.BatchWait = 300 * time.Millisecond // poison and good in one batch
	stop := e.runApp(cfg, app.Options{})
	l := newLoad(e, 14)
	c := e.client.Database(e.dbName).Collection("widgets")
	var good []bson.ObjectID
	bad := bson.NewObjectID()
	for i := 0; i < 40; i++ {
		id := bson.NewObjectID()
		_, err := c.InsertOne(e.ctx, l.doc("widgets", id, 1))
		must(t, err)
		good = append(good, id)
		if i == 20 {
			d := l.doc("widgets", bad, 1)
			d[2].Value = int64(-5) // qty
			_, err := c.InsertOne(e.ctx, d)
			must(t, err)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s within 1m: %d dead letters, %d widgets", what,
					e.count(e.ctx, `SELECT count(*) FROM cdc.dead_letters`), e.count(e.ctx, `SELECT count(*) FROM widgets`))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("poison dead-lettered and good events applied", func() bool {
		return e.count(e.ctx, `SELECT count(*) FROM cdc.dead_letters`) == 1 && e.count(e.ctx, `SELECT count(*) FROM widgets`) == len(good)
	})
	// A later event of the poisoned document (still invalid for the
	// schema): parked, not applied over the gap.
	_, err = c.UpdateByID(e.ctx, bad, bson.D{{Key: "$set", Value: bson.D{{Key: "qty", Value: int64(-7)}}}, {Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}})
	must(t, err)
	waitFor("the later event parked", func() bool { return e.count(e.ctx, `SELECT count(*) FROM cdc.dead_letters`) == 2 })
	must(t, stop())
	es, err := dlq.List(e.ctx, e.pool, dlq.Filter{Status: "open"})
	must(t, err)
	if len(es) != 2 || es[0].Class != "poison" || es[1].Class != "parked" || es[0].DocKey != bad.Hex() {
		t.Fatalf("dead letters = %+v", es)
	}
	if want := "widgets_qty_nonneg"; !containsStr(es[0].Reason, want) {
		t.Fatalf("reason %q does not name %s", es[0].Reason, want)
	}
	if e.count(e.ctx, `SELECT count(*) FROM widgets`) != len(good) {
		t.Fatal("good events of the batch did not commit")
	}
	// Retrying before the cause is fixed fails again, loudly, and keeps
	// both entries open.
	rep, err := dlq.Retry(e.ctx, e.pool, mustTransforms(e, cfg), dlq.Filter{Collection: "widgets", DocKey: bad.Hex()}, false)
	must(t, err)
	if rep.DeadLettered != 2 || e.count(e.ctx, `SELECT count(*) FROM cdc.dead_letters WHERE status = 'open'`) != 2 {
		t.Fatalf("retry before the fix: %+v", rep)
	}
	// Fix the cause, retry: the document's events apply in order (the
	// newest state wins within the transaction); the row ends at v2.
	_, err = e.pool.Exec(e.ctx, `ALTER TABLE widgets DROP CONSTRAINT widgets_qty_nonneg`)
	must(t, err)
	rep, err = dlq.Retry(e.ctx, e.pool, mustTransforms(e, cfg), dlq.Filter{Collection: "widgets", DocKey: bad.Hex()}, false)
	must(t, err)
	if rep.Selected != 2 || rep.DeadLettered != 0 {
		t.Fatalf("retry after the fix: %+v", rep)
	}
	if e.count(e.ctx, `SELECT count(*) FROM cdc.dead_letters WHERE status = 'open'`) != 0 {
		t.Fatal("entries still open after a successful retry")
	}
	e.waitExact(10 * time.Second)
	// A second retry changes nothing.
	sum := e.checksum()
	rep, err = dlq.Retry(e.ctx, e.pool, mustTransforms(e, cfg), dlq.Filter{Collection: "widgets", DocKey: bad.Hex()}, false)
	must(t, err)
	if rep.Selected != 0 || e.checksum() != sum {
		t.Fatalf("second retry: %+v", rep)
	}
}

func containsStr(s, sub string) bool { return strings.Contains(s, sub) }

// TestPostgresOutageThirtySeconds: Postgres stopped for 30 s during load:
// no dead letters, no loss, the sink catches up.
func TestPostgresOutageThirtySeconds(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	stop := e.runApp(cfg, app.Options{})
	l := newLoad(e, 15)
	must(t, l.run(e.ctx, 1000))
	c := pgtestShared()
	must(t, c.Stop(e.ctx))
	done := make(chan error, 1)
	go func() { done <- l.run(e.ctx, 3000) }()
	time.Sleep(30 * time.Second)
	must(t, c.StartAgain(e.ctx))
	must(t, <-done)
	e.waitExact(2 * time.Minute)
	must(t, stop())
	e.assertNoDoubleApply() // also asserts no dead letters
}
