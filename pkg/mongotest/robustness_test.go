package mongotest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

func TestCloseWhileGetMoreWaiting(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := connect(t, s)
	ctx := testCtx(t)
	cs, err := c.Database("d").Collection("c").Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cs.Next(nctx)
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v with a getMore waiting", d)
	}
	<-done
	if s.ConnectionCount() != 0 {
		t.Fatalf("%d connections left after Close", s.ConnectionCount())
	}
	// Close is idempotent.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestUnacknowledgedWrites(t *testing.T) {
	s := startServer(t)
	c := connect(t, s, options.Client().SetMaxPoolSize(1))
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c", options.Collection().SetWriteConcern(writeconcern.Unacknowledged()))
	for i := 0; i < 3; i++ {
		// An unacknowledged write reports no error and Acknowledged false
		// (mongo/errors.go, processWriteError in driver v2).
		res, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Acknowledged {
			t.Fatalf("insert %d: acknowledged under w:0", i)
		}
	}
	// With one pooled connection, a stray reply to a moreToCome request
	// would be read as the answer to the next command.
	n, err := c.Database("d").Collection("c").CountDocuments(ctx, bson.D{})
	if err != nil || n != 3 {
		t.Fatalf("count after w:0 inserts: %d %v", n, err)
	}
}

func TestConcurrentWritersOneStream(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	db := c.Database("d")
	cs, err := db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	const writers, per = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			coll := db.Collection(fmt.Sprintf("c%d", w%3))
			for i := 0; i < per; i++ {
				if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("%d-%d", w, i)}}); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	seen := map[string]bool{}
	var last event
	for len(seen) < writers*per {
		ev := next(t, cs, 10*time.Second)
		id := evID(ev).(string)
		if seen[id] {
			t.Fatalf("duplicate event for %s", id)
		}
		seen[id] = true
		if last.ID != nil && compareTimestamps(last.ClusterTime, ev.ClusterTime) >= 0 {
			t.Fatal("cluster times must increase")
		}
		last = ev
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	expectIdle(t, cs)
}

func TestTwoTransactionsConflict(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("bank").Collection("accounts")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "bal", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	s1, _ := c.StartSession()
	defer s1.EndSession(ctx)
	s2, _ := c.StartSession()
	defer s2.EndSession(ctx)
	_ = s1.StartTransaction()
	_ = s2.StartTransaction()
	sc1 := mongo.NewSessionContext(ctx, s1)
	sc2 := mongo.NewSessionContext(ctx, s2)
	inc := bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: 1}}}}
	if _, err := coll.UpdateOne(sc1, bson.D{{Key: "_id", Value: "a"}}, inc); err != nil {
		t.Fatal(err)
	}
	_, err := coll.UpdateOne(sc2, bson.D{{Key: "_id", Value: "a"}}, inc)
	var se mongo.ServerError
	if !errors.As(err, &se) || !se.HasErrorCode(112) || !se.HasErrorLabel("TransientTransactionError") {
		t.Fatalf("second transaction: %v", err)
	}
	_ = s2.AbortTransaction(ctx)
	if err := s1.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	var a bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&a); err != nil || a["bal"] != int32(1) {
		t.Fatalf("balance %v %v", a, err)
	}
	// Committing again (as a driver retry would) is fine.
	if err := s1.CommitTransaction(ctx); err != nil {
		t.Fatalf("commit retry: %v", err)
	}
}

func TestMaxOplogEntries(t *testing.T) {
	s, err := New(Options{MaxOplogEntries: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: -1}}); err != nil {
		t.Fatal(err)
	}
	early := next(t, cs, 5*time.Second)
	for i := 0; i < 20; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.OplogLen(); n != 10 {
		t.Fatalf("oplog has %d entries", n)
	}
	if compareTimestamps(s.OldestOplogTime(), early.ClusterTime) <= 0 {
		t.Fatal("oldest entry not advanced")
	}
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(early.ID))
	assertCode(t, err, 286)
}

func TestUnorderedInsertErrors(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	_, err := coll.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}},
	}, options.InsertMany().SetOrdered(false))
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || len(bwe.WriteErrors) != 1 || bwe.WriteErrors[0].Index != 1 || bwe.WriteErrors[0].Code != 11000 {
		t.Fatalf("unordered insert: %v", err)
	}
	if n, _ := coll.CountDocuments(ctx, bson.D{}); n != 2 {
		t.Fatalf("count %d", n)
	}
	// Ordered stops at the first error.
	_, err = coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 3}}, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 4}}})
	if !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("ordered insert: %v", err)
	}
	if n, _ := coll.CountDocuments(ctx, bson.D{}); n != 3 {
		t.Fatalf("count %d", n)
	}
}

func TestKillCursors(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	docs := make([]any, 10)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}}
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(2))
	if err != nil {
		t.Fatal(err)
	}
	id := cur.ID()
	if id == 0 {
		t.Fatal("expected an open cursor")
	}
	if err := cur.Close(ctx); err != nil {
		t.Fatal(err)
	}
	err = c.Database("d").RunCommand(ctx, bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}}).Err()
	assertCode(t, err, 43)
}

func TestClusterStreamAndDropDatabase(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	cs, err := c.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	dcs, err := c.Database("x").Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer dcs.Close(ctx)
	if _, err := c.Database("x").Collection("a").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Database("y").Collection("b").InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Database("x").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"insert x.a", "insert y.b", "drop x.a", "dropDatabase x."} {
		ev := next(t, cs, 5*time.Second)
		if got := ev.OperationType + " " + ev.NS.DB + "." + ev.NS.Coll; got != want {
			t.Fatalf("cluster stream: got %q want %q", got, want)
		}
	}
	for _, want := range []string{"insert", "drop", "dropDatabase", "invalidate"} {
		if ev := next(t, dcs, 5*time.Second); ev.OperationType != want {
			t.Fatalf("database stream: got %v want %s", ev.raw, want)
		}
	}
}

func TestStopRestart(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, cs, 5*time.Second); evID(ev) != int32(0) {
		t.Fatalf("before outage: %v", ev.raw)
	}
	s.Stop()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(700 * time.Millisecond)
		restarted <- s.Restart()
	}()
	// Blocks in server selection until the server is back, then succeeds.
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatalf("insert across the outage: %v", err)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	// The change stream's cursor died with the server; the driver resumes
	// from its token without losing or repeating events.
	for _, want := range []int32{1, 2} {
		if ev := next(t, cs, 10*time.Second); evID(ev) != want {
			t.Fatalf("after restart: got %v want %d", ev.raw, want)
		}
	}
	expectIdle(t, cs)
	if n, _ := coll.CountDocuments(ctx, bson.D{}); n != 3 {
		t.Fatalf("count %d", n)
	}
}

func TestMaxOplogBytes(t *testing.T) {
	s, err := New(Options{MaxOplogBytes: 20000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := connect(t, s)
	ctx := testCtx(t)
	pad := make([]byte, 1000)
	for i := 0; i < 100; i++ {
		if _, err := c.Database("d").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: pad}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.OplogLen(); n < 10 || n > 25 {
		t.Fatalf("oplog holds %d entries of ~1KB under a 20KB cap", n)
	}
	// Every document is still there: only history is dropped.
	if n, _ := c.Database("d").Collection("c").CountDocuments(ctx, bson.D{}); n != 100 {
		t.Fatalf("count %d", n)
	}
}
