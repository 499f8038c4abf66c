package mongotest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// event is the part of a change event the tests look at.
type event struct {
	ID            bson.Raw       `bson:"_id"`
	OperationType string         `bson:"operationType"`
	ClusterTime   bson.Timestamp `bson:"clusterTime"`
	WallTime      time.Time      `bson:"wallTime"`
	NS            struct {
		DB   string `bson:"db"`
		Coll string `bson:"coll"`
	} `bson:"ns"`
	DocumentKey       bson.M `bson:"documentKey"`
	FullDocument      bson.M `bson:"fullDocument"`
	UpdateDescription *struct {
		UpdatedFields   bson.M   `bson:"updatedFields"`
		RemovedFields   []string `bson:"removedFields"`
		TruncatedArrays []any    `bson:"truncatedArrays"`
	} `bson:"updateDescription"`
	LSID      bson.Raw `bson:"lsid"`
	TxnNumber *int64   `bson:"txnNumber"`
	raw       bson.Raw
}

// next reads one event, failing the test after timeout.
func next(t testing.TB, cs *mongo.ChangeStream, timeout time.Duration) event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if !cs.Next(ctx) {
		t.Fatalf("no change event: %v", cs.Err())
	}
	var ev event
	if err := cs.Decode(&ev); err != nil {
		t.Fatal(err)
	}
	ev.raw = append(bson.Raw(nil), cs.Current...)
	return ev
}

// expectIdle asserts that no event arrives with TryNext.
func expectIdle(t testing.TB, cs *mongo.ChangeStream) {
	t.Helper()
	if cs.TryNext(testCtx(t)) {
		t.Fatalf("unexpected event %v", cs.Current)
	}
	if err := cs.Err(); err != nil {
		t.Fatal(err)
	}
}

func evID(ev event) any { return ev.DocumentKey["_id"] }

func TestChangeStreamEvents(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	db := c.Database("bank")
	cs, err := db.Watch(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "ns.coll", Value: bson.D{{Key: "$in", Value: bson.A{"accounts", "ledger"}}}}}}},
	}, options.ChangeStream().SetFullDocument(options.UpdateLookup).SetMaxAwaitTime(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)

	acc := db.Collection("accounts")
	if _, err := acc.InsertOne(ctx, bson.D{{Key: "_id", Value: "a1"}, {Key: "bal", Value: 10}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("ignored").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Database("other").Collection("accounts").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a1"}}, bson.D{
		{Key: "$inc", Value: bson.D{{Key: "bal", Value: 5}}},
		{Key: "$set", Value: bson.D{{Key: "meta.by", Value: "x"}}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a1"}}, bson.D{{Key: "$unset", Value: bson.D{{Key: "meta", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "a1"}}, bson.D{{Key: "bal", Value: 100}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("ledger").InsertOne(ctx, bson.D{{Key: "_id", Value: 7}}); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.DeleteOne(ctx, bson.D{{Key: "_id", Value: "a1"}}); err != nil {
		t.Fatal(err)
	}

	ins := next(t, cs, 5*time.Second)
	if ins.OperationType != "insert" || ins.NS.DB != "bank" || ins.NS.Coll != "accounts" || evID(ins) != "a1" ||
		ins.FullDocument["bal"] != int32(10) || ins.UpdateDescription != nil || ins.LSID != nil || ins.TxnNumber != nil {
		t.Fatalf("insert event %v", ins.raw)
	}
	if ins.WallTime.IsZero() || ins.ClusterTime.T == 0 {
		t.Fatalf("insert event times %v", ins.raw)
	}
	up := next(t, cs, 5*time.Second)
	if up.OperationType != "update" || up.UpdateDescription == nil ||
		up.raw.Lookup("updateDescription", "updatedFields").String() != `{"bal": {"$numberInt":"15"},"meta": {"by": "x"}}` ||
		len(up.UpdateDescription.RemovedFields) != 0 {
		t.Fatalf("update event %v", up.raw)
	}
	// updateLookup returns the document as it is when the event is read:
	// by now it has been deleted.
	if v, ok := up.raw.Lookup("fullDocument").DocumentOK(); ok || up.raw.Lookup("fullDocument").Type != bson.TypeNull {
		t.Fatalf("updateLookup of a deleted document should be null, got %v", v)
	}
	un := next(t, cs, 5*time.Second)
	if un.OperationType != "update" || fmt.Sprint(un.UpdateDescription.RemovedFields) != "[meta]" || len(un.UpdateDescription.UpdatedFields) != 0 {
		t.Fatalf("unset event %v", un.raw)
	}
	rep := next(t, cs, 5*time.Second)
	if rep.OperationType != "replace" || rep.FullDocument["bal"] != int32(100) || rep.FullDocument["_id"] != "a1" {
		t.Fatalf("replace event %v", rep.raw)
	}
	led := next(t, cs, 5*time.Second)
	if led.OperationType != "insert" || led.NS.Coll != "ledger" {
		t.Fatalf("ledger event %v", led.raw)
	}
	del := next(t, cs, 5*time.Second)
	if del.OperationType != "delete" || evID(del) != "a1" || del.FullDocument != nil {
		t.Fatalf("delete event %v", del.raw)
	}
	// Cluster times and tokens increase.
	evs := []event{ins, up, un, rep, led, del}
	for i := 1; i < len(evs); i++ {
		if compareTimestamps(evs[i-1].ClusterTime, evs[i].ClusterTime) >= 0 {
			t.Fatalf("cluster times not increasing: %v then %v", evs[i-1].ClusterTime, evs[i].ClusterTime)
		}
		if evs[i-1].ID.Lookup("_data").StringValue() >= evs[i].ID.Lookup("_data").StringValue() {
			t.Fatal("resume tokens not increasing")
		}
	}
	expectIdle(t, cs)
}

func TestChangeStreamUpdateLookupCurrentDocument(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(options.UpdateLookup))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 3; i++ {
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: i}}}}); err != nil {
			t.Fatal(err)
		}
	}
	next(t, cs, 5*time.Second)
	u1 := next(t, cs, 5*time.Second)
	if u1.UpdateDescription.UpdatedFields["v"] != int32(2) || u1.FullDocument["v"] != int32(3) {
		t.Fatalf("first update: %v", u1.raw)
	}
}

func TestResumeTokenAdvancesWhenIdle(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	opts := options.ChangeStream().SetMaxAwaitTime(50 * time.Millisecond)
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	tok0 := cs.ResumeToken()
	if tok0 == nil {
		t.Fatal("no resume token after aggregate")
	}
	// Writes elsewhere advance the post-batch resume token of an idle stream.
	if _, err := c.Database("d").Collection("other").InsertOne(ctx, bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	// The first TryNext only consumes the (empty) first batch of the
	// aggregate; the second one runs a getMore, whose post-batch resume
	// token covers the write above.
	expectIdle(t, cs)
	expectIdle(t, cs)
	tok1 := cs.ResumeToken()
	if tok1.Lookup("_data").StringValue() <= tok0.Lookup("_data").StringValue() {
		t.Fatalf("resume token did not advance: %v -> %v", tok0, tok1)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "later"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "later2"}}); err != nil {
		t.Fatal(err)
	}
	cs2, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(tok1).SetMaxAwaitTime(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs2.Close(ctx)
	if ev := next(t, cs2, 5*time.Second); evID(ev) != "later" {
		t.Fatalf("first event after idle token: %v", ev.raw)
	}
	if ev := next(t, cs2, 5*time.Second); evID(ev) != "later2" {
		t.Fatalf("second event after idle token: %v", ev.raw)
	}
	expectIdle(t, cs2)
	// The token after the last event of a batch is the post-batch token,
	// and resuming from it returns nothing old.
	tok2 := cs2.ResumeToken()
	cs3, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAfter(tok2).SetMaxAwaitTime(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs3.Close(ctx)
	expectIdle(t, cs3)
}

func TestResumeAfterStartAfterStartAt(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	for i := 0; i < 5; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	var evs []event
	for i := 0; i < 5; i++ {
		evs = append(evs, next(t, cs, 5*time.Second))
	}
	check := func(name string, o *options.ChangeStreamOptionsBuilder, first int) {
		t.Helper()
		cs, err := coll.Watch(ctx, mongo.Pipeline{}, o.SetMaxAwaitTime(50*time.Millisecond))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer cs.Close(ctx)
		for i := first; i < 5; i++ {
			ev := next(t, cs, 5*time.Second)
			if evID(ev) != int32(i) {
				t.Fatalf("%s: got %v want _id %d", name, ev.raw, i)
			}
		}
		expectIdle(t, cs)
	}
	check("resumeAfter", options.ChangeStream().SetResumeAfter(evs[1].ID), 2)
	check("startAfter", options.ChangeStream().SetStartAfter(evs[3].ID), 4)
	check("startAtOperationTime", options.ChangeStream().SetStartAtOperationTime(&evs[2].ClusterTime), 2)
	// Database and cluster streams resume from the same tokens.
	dcs, err := c.Database("d").Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(evs[3].ID))
	if err != nil {
		t.Fatal(err)
	}
	defer dcs.Close(ctx)
	if ev := next(t, dcs, 5*time.Second); evID(ev) != int32(4) {
		t.Fatalf("db stream resume: %v", ev.raw)
	}
	ccs, err := c.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAfter(evs[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	defer ccs.Close(ctx)
	if ev := next(t, ccs, 5*time.Second); evID(ev) != int32(1) {
		t.Fatalf("cluster stream resume: %v", ev.raw)
	}
}

func TestTransactionEvents(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	db := c.Database("bank")
	cs, err := db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := db.Collection("accounts").InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "a"}, {Key: "bal", Value: 100}},
		bson.D{{Key: "_id", Value: "b"}, {Key: "bal", Value: 0}},
	}); err != nil {
		t.Fatal(err)
	}
	next(t, cs, 5*time.Second)
	next(t, cs, 5*time.Second)

	sess, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		acc := db.Collection("accounts")
		if _, err := acc.UpdateOne(sc, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: -30}}}}); err != nil {
			return nil, err
		}
		if _, err := acc.UpdateOne(sc, bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: 30}}}}); err != nil {
			return nil, err
		}
		if _, err := db.Collection("ledger").InsertOne(sc, bson.D{{Key: "_id", Value: "t1"}, {Key: "amt", Value: 30}}); err != nil {
			return nil, err
		}
		if _, err := db.Collection("ledger").UpdateOne(sc, bson.D{{Key: "_id", Value: "t1"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "ok", Value: true}}}}); err != nil {
			return nil, err
		}
		// Reads in the transaction see its own writes.
		var a bson.M
		if err := acc.FindOne(sc, bson.D{{Key: "_id", Value: "a"}}).Decode(&a); err != nil || a["bal"] != int32(70) {
			return nil, fmt.Errorf("read own write: %v %v", a, err)
		}
		_, err := db.Collection("audit").InsertOne(sc, bson.D{{Key: "what", Value: "transfer"}})
		return nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	var evs []event
	for i := 0; i < 5; i++ {
		evs = append(evs, next(t, cs, 5*time.Second))
	}
	wantOps := []string{"update", "update", "insert", "update", "insert"}
	wantColl := []string{"accounts", "accounts", "ledger", "ledger", "audit"}
	for i, ev := range evs {
		if ev.OperationType != wantOps[i] || ev.NS.Coll != wantColl[i] {
			t.Fatalf("event %d: %v", i, ev.raw)
		}
		if ev.ClusterTime != evs[0].ClusterTime {
			t.Fatalf("event %d has cluster time %v, first %v", i, ev.ClusterTime, evs[0].ClusterTime)
		}
		if ev.TxnNumber == nil || *ev.TxnNumber != *evs[0].TxnNumber {
			t.Fatalf("event %d txnNumber: %v", i, ev.raw)
		}
		sub, id, ok := ev.LSID.Lookup("id").BinaryOK()
		uidSub, uid, ok2 := ev.LSID.Lookup("uid").BinaryOK()
		if !ok || !ok2 || sub != 4 || len(id) != 16 || uidSub != 0 || len(uid) != 32 {
			t.Fatalf("event %d lsid %v", i, ev.LSID)
		}
		if !bytesEqual(ev.LSID, evs[0].LSID) {
			t.Fatalf("event %d lsid differs", i)
		}
		if i > 0 && ev.ID.Lookup("_data").StringValue() <= evs[i-1].ID.Lookup("_data").StringValue() {
			t.Fatal("tokens inside a transaction must increase")
		}
	}
	sid := sess.ID().Lookup("id")
	if _, b, _ := sid.BinaryOK(); !bytesEqual(b, mustBin(evs[0].LSID.Lookup("id"))) {
		t.Fatal("lsid.id is not the session's id")
	}

	// An aborted transaction leaves no trace.
	sess2, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess2.EndSession(ctx)
	if err := sess2.StartTransaction(); err != nil {
		t.Fatal(err)
	}
	sc := mongo.NewSessionContext(ctx, sess2)
	if _, err := db.Collection("accounts").UpdateOne(sc, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: -1000}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("ledger").InsertOne(sc, bson.D{{Key: "_id", Value: "t2"}}); err != nil {
		t.Fatal(err)
	}
	if err := sess2.AbortTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	expectIdle(t, cs)
	var a bson.M
	if err := db.Collection("accounts").FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&a); err != nil || a["bal"] != int32(70) {
		t.Fatalf("after abort: %v %v", a, err)
	}
	if n, _ := db.Collection("ledger").CountDocuments(ctx, bson.D{}); n != 1 {
		t.Fatalf("ledger has %d docs after abort", n)
	}
	// Retryable writes (the driver default) carry lsid/txnNumber on the
	// wire but their events do not.
	if _, err := db.Collection("ledger").InsertOne(ctx, bson.D{{Key: "_id", Value: "t3"}}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, cs, 5*time.Second); ev.LSID != nil || ev.TxnNumber != nil {
		t.Fatalf("retryable write event has txn fields: %v", ev.raw)
	}
}

func TestTransactionWriteConflictRetried(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("bank").Collection("accounts")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "bal", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	sess, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	attempts := 0
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		attempts++
		if _, err := coll.UpdateOne(sc, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: 1}}}}); err != nil {
			return nil, err
		}
		if attempts == 1 {
			// A non-transactional write to the same document aborts the
			// transaction; WithTransaction retries it.
			if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: 100}}}}); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var a bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&a); err != nil || a["bal"] != int32(101) || attempts != 2 {
		t.Fatalf("balance %v after %d attempts (%v)", a, attempts, err)
	}
}

func TestDropConnectionsMidStream(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(100*time.Millisecond).SetBatchSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	const total = 40
	seen := 0
	for i := 0; i < total; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
		if i%10 == 5 {
			// Read a little, then cut every connection (including the one
			// the stream's getMore is using).
			ev := next(t, cs, 5*time.Second)
			if evID(ev) != int32(seen) {
				t.Fatalf("got %v want %d", ev.raw, seen)
			}
			seen++
			s.DropConnections()
		}
	}
	for seen < total {
		ev := next(t, cs, 10*time.Second)
		if evID(ev) != int32(seen) {
			t.Fatalf("after reconnect: got %v want %d", ev.raw, seen)
		}
		seen++
	}
	expectIdle(t, cs)
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != total {
		t.Fatalf("count %d %v", n, err)
	}
}

func TestFailCommandResumable(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	next(t, cs, 5*time.Second)
	s.FailCommand("getMore", 1, 6, "ResumableChangeStreamError")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, cs, 5*time.Second); evID(ev) != int32(2) {
		t.Fatalf("after resumable error: %v", ev.raw)
	}
	// Also when the resume attempt's aggregate fails once (the driver
	// retries it as a retryable read).
	s.FailCommand("getMore", 1, 6, "ResumableChangeStreamError")
	s.FailCommand("aggregate", 1, 6)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, cs, 5*time.Second); evID(ev) != int32(3) {
		t.Fatalf("after failed resume: %v", ev.raw)
	}
	// A write failing with a retryable label is retried by the driver.
	s.FailCommand("insert", 1, 91, "RetryableWriteError")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 4}}); err != nil {
		t.Fatal(err)
	}
	// Closing the connection under an insert: the driver retries it and
	// the server's retryable-write memo keeps it exactly-once.
	s.FailCommandCloseConnection("insert", 1)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 5}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int32{4, 5} {
		if ev := next(t, cs, 5*time.Second); evID(ev) != want {
			t.Fatalf("got %v want %d", ev.raw, want)
		}
	}
	expectIdle(t, cs)
}

func TestHistoryLost(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")

	// A non-resumable error on getMore surfaces as is.
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	s.FailCommand("getMore", 1, 286)
	if cs.Next(ctx) {
		t.Fatal("expected an error")
	}
	assertCode(t, cs.Err(), 286)
	cs.Close(ctx)

	// Resuming from a token whose history was truncated fails with 286.
	// (Batch size 1 so that the driver has not buffered later events.)
	cs, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(50*time.Millisecond).SetBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	for i := 0; i < 3; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	first := next(t, cs, 5*time.Second)
	s.TruncateOplog(s.LatestOplogTime())
	if s.OldestOplogTime() != s.LatestOplogTime() {
		t.Fatalf("oplog window after truncation %v-%v", s.OldestOplogTime(), s.LatestOplogTime())
	}
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(first.ID))
	assertCode(t, err, 286)
	ts := first.ClusterTime
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&ts))
	assertCode(t, err, 286)
	// The open cursor had not read the second insert, which is gone.
	if cs.Next(ctx) {
		t.Fatalf("open cursor read %v after its history was truncated", cs.Current)
	}
	assertCode(t, cs.Err(), 286)
	var se mongo.ServerError
	if errors.As(cs.Err(), &se) && se.HasErrorLabel("ResumableChangeStreamError") {
		t.Fatal("286 must not be resumable")
	}
}

func assertCode(t testing.TB, err error, code int) {
	t.Helper()
	var se mongo.ServerError
	if !errors.As(err, &se) || !se.HasErrorCode(code) {
		t.Fatalf("want server error %d, got %v", code, err)
	}
}

func TestGetMoreWakesOnWrite(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: 1}})
	}()
	start := time.Now()
	ev := next(t, cs, 10*time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("getMore took %v to see a write (maxAwaitTime 5s)", d)
	}
	if evID(ev) != int32(1) {
		t.Fatalf("event %v", ev.raw)
	}
}

func TestCollectionDropInvalidates(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"insert", "drop", "invalidate"} {
		if ev := next(t, cs, 5*time.Second); ev.OperationType != want {
			t.Fatalf("got %v want %s", ev.raw, want)
		}
	}
	inv := cs.ResumeToken()
	if cs.Next(ctx) || cs.ID() != 0 {
		t.Fatal("stream must end after invalidate")
	}
	// startAfter an invalidate token opens a new stream on the namespace.
	cs2, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAfter(inv))
	if err != nil {
		t.Fatal(err)
	}
	defer cs2.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, cs2, 5*time.Second); ev.OperationType != "insert" || evID(ev) != int32(2) {
		t.Fatalf("after startAfter invalidate: %v", ev.raw)
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func mustBin(v bson.RawValue) []byte {
	_, b, _ := v.BinaryOK()
	return b
}

func TestChangeStreamProject(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "insert"}}}},
		{{Key: "$project", Value: bson.D{{Key: "operationType", Value: 1}, {Key: "documentKey", Value: 1}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	bad, err := coll.Watch(ctx, mongo.Pipeline{{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "secret", Value: "x"}}); err != nil {
		t.Fatal(err)
	}
	ev := next(t, cs, 5*time.Second)
	keys, _ := ev.raw.Elements()
	if len(keys) != 3 || ev.OperationType != "insert" || evID(ev) != int32(1) {
		t.Fatalf("projected event %v", ev.raw)
	}
	if bad.Next(ctx) {
		t.Fatal("an event without _id must fail the stream")
	}
	assertCode(t, bad.Err(), 280)
}

func TestChangeStreamImages(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	// Images exist only for collections with changeStreamPreAndPostImages
	// (images.go).
	if err := c.Database("d").CreateCollection(ctx, "c", options.CreateCollection().
		SetChangeStreamPreAndPostImages(bson.D{{Key: "enabled", Value: true}})); err != nil {
		t.Fatal(err)
	}
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().
		SetFullDocument(options.WhenAvailable).SetFullDocumentBeforeChange(options.WhenAvailable))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 2}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 3}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	next(t, cs, 5*time.Second)
	u := next(t, cs, 5*time.Second)
	// Post-images are those recorded at write time, not the current state.
	if u.FullDocument["v"] != int32(2) || u.raw.Lookup("fullDocumentBeforeChange", "v").Int32() != 1 {
		t.Fatalf("update images %v", u.raw)
	}
	next(t, cs, 5*time.Second)
	d := next(t, cs, 5*time.Second)
	if d.OperationType != "delete" || d.raw.Lookup("fullDocumentBeforeChange", "v").Int32() != 3 {
		t.Fatalf("delete pre-image %v", d.raw)
	}
}
