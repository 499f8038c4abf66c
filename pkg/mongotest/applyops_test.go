package mongotest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// oplogEntries reads local.oplog.rs entries matching filter, in natural order.
func oplogEntries(t *testing.T, c *mongo.Client, filter bson.D) []bson.Raw {
	t.Helper()
	ctx := testCtx(t)
	cur, err := c.Database("local").Collection("oplog.rs").Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "$natural", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	var out []bson.Raw
	for cur.Next(ctx) {
		out = append(out, append(bson.Raw(nil), cur.Current...))
	}
	if err := cur.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// runTxn runs fn in a committed transaction.
func runTxn(t *testing.T, c *mongo.Client, fn func(sc context.Context) error) {
	t.Helper()
	sess, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(context.Background())
	if _, err := sess.WithTransaction(testCtx(t), func(sc context.Context) (any, error) { return nil, fn(sc) }); err != nil {
		t.Fatal(err)
	}
}

// TestTxnIsOneApplyOpsEntry: a committed transaction is one c entry on
// admin.$cmd holding its writes; its events still come one per write with
// the entry's cluster time.
func TestTxnIsOneApplyOpsEntry(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	a, b := c.Database("d").Collection("a"), c.Database("d").Collection("b")
	if _, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	cs, err := c.Database("d").Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	runTxn(t, c, func(sc context.Context) error {
		if _, err := a.UpdateByID(sc, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 2}}}}); err != nil {
			return err
		}
		if _, err := b.InsertOne(sc, bson.D{{Key: "_id", Value: 9}}); err != nil {
			return err
		}
		_, err := a.DeleteOne(sc, bson.D{{Key: "_id", Value: 1}})
		return err
	})
	entries := oplogEntries(t, c, bson.D{{Key: "ns", Value: "admin.$cmd"}})
	if len(entries) != 1 {
		t.Fatalf("%d admin.$cmd entries, want 1: %v", len(entries), entries)
	}
	e := entries[0]
	if e.Lookup("op").StringValue() != "c" || e.Lookup("txnNumber").Type != bson.TypeInt64 || e.Lookup("lsid", "id").Type != bson.TypeBinary {
		t.Fatalf("entry %v", e)
	}
	if _, err := e.LookupErr("o", "partialTxn"); err == nil {
		t.Fatalf("single-entry transaction marked partial: %v", e)
	}
	if pt, _ := e.Lookup("prevOpTime", "ts").Timestamp(); pt != 0 || e.Lookup("prevOpTime", "t").Int64() != -1 {
		t.Fatalf("prevOpTime %v, want {ts: Timestamp(0, 0), t: -1}", e.Lookup("prevOpTime"))
	}
	ops, _ := e.Lookup("o", "applyOps").Array().Values()
	var shape []string
	for _, op := range ops {
		d := op.Document()
		shape = append(shape, d.Lookup("op").StringValue()+" "+d.Lookup("ns").StringValue())
		if d.Lookup("ui").Type != bson.TypeBinary {
			t.Fatalf("op without ui: %v", d)
		}
	}
	if got := strings.Join(shape, ","); got != "u d.a,i d.b,d d.a" {
		t.Fatalf("applyOps %q", got)
	}
	if diff := ops[0].Document().Lookup("o"); diff.Document().Lookup("diff", "u", "v").Int32() != 2 {
		t.Fatalf("update op o %v, want {$v: 2, diff: {u: {v: 2}}}", diff)
	}
	if n := len(oplogEntries(t, c, bson.D{{Key: "ns", Value: "d.a"}})); n != 1 { // the insert before
		t.Fatalf("%d CRUD entries on d.a, want only the insert outside the transaction", n)
	}
	// Verify's filter for transactions: o.applyOps.ns through the array.
	if n := len(oplogEntries(t, c, bson.D{{Key: "o.applyOps.ns", Value: bson.D{{Key: "$in", Value: bson.A{"d.b"}}}}})); n != 1 {
		t.Fatalf("o.applyOps.ns $in matched %d entries", n)
	}
	ts := e.Lookup("ts")
	for i := 0; i < 3; i++ {
		ev := next(t, cs, 5*time.Second)
		if !ev.raw.Lookup("clusterTime").Equal(ts) || ev.TxnNumber == nil {
			t.Fatalf("event %d %v, want clusterTime %v and txnNumber", i, ev.raw, ts)
		}
	}
}

// TestTxnChain: a transaction over 16 MB is a chain of partialTxn entries
// linked by prevOpTime ending with a count entry; events carry the commit
// entry's time; the chain leaves the oplog whole.
func TestTxnChain(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	start, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	before := start.ResumeToken()
	_ = start.Close(ctx)
	runTxn(t, c, func(sc context.Context) error {
		for i := 0; i < 3; i++ {
			if _, err := coll.InsertOne(sc, bigDoc(i, 7<<20)); err != nil {
				return err
			}
		}
		return nil
	})
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "after"}}); err != nil {
		t.Fatal(err)
	}
	entries := oplogEntries(t, c, bson.D{{Key: "ns", Value: "admin.$cmd"}})
	if len(entries) != 2 {
		t.Fatalf("%d applyOps entries, want 2", len(entries))
	}
	first, last := entries[0], entries[1]
	n0, _ := first.Lookup("o", "applyOps").Array().Values()
	n1, _ := last.Lookup("o", "applyOps").Array().Values()
	if len(n0) != 2 || len(n1) != 1 || !first.Lookup("o", "partialTxn").Boolean() || last.Lookup("o", "count").Int64() != 3 {
		t.Fatalf("chain: %d ops partialTxn=%v, then %d ops count=%v", len(n0), first.Lookup("o", "partialTxn"), len(n1), last.Lookup("o", "count"))
	}
	if _, err := last.LookupErr("o", "partialTxn"); err == nil {
		t.Fatal("commit entry marked partial")
	}
	if !last.Lookup("prevOpTime", "ts").Equal(first.Lookup("ts")) || last.Lookup("prevOpTime", "t").Int64() != 1 {
		t.Fatalf("commit prevOpTime %v, want the first entry's optime %v", last.Lookup("prevOpTime"), first.Lookup("ts"))
	}
	for _, e := range entries {
		if len(e) > maxEventSize {
			t.Fatalf("applyOps entry of %d bytes", len(e))
		}
	}
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(before))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	for i := 0; i < 3; i++ {
		if ev := next(t, cs, 5*time.Second); !ev.raw.Lookup("clusterTime").Equal(last.Lookup("ts")) {
			t.Fatalf("event %d clusterTime %v, want the commit's %v", i, ev.raw.Lookup("clusterTime"), last.Lookup("ts"))
		}
	}
	// Truncating just past the chain's first entry loses the whole
	// transaction: the oplog then starts after it, and resuming before it
	// fails with ChangeStreamHistoryLost.
	t0, i0 := first.Lookup("ts").Timestamp()
	s.TruncateOplog(bson.Timestamp{T: t0, I: i0 + 1})
	if got := oplogEntries(t, c, bson.D{{Key: "ns", Value: "admin.$cmd"}}); len(got) != 0 {
		t.Fatalf("%d entries of the chain left after its first was truncated", len(got))
	}
	lost, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(before))
	if err == nil {
		_ = lost.Close(ctx)
	}
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != codeChangeStreamHistoryLost {
		t.Fatalf("resume before the truncated chain: %v, want 286", err)
	}
}

// TestUpdateEntryDiff: update entries use the $v:2 diff format.
func TestUpdateEntryDiff(t *testing.T) {
	base := bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}, {Key: "x", Value: 1},
		{Key: "sub", Value: bson.D{{Key: "a", Value: 1}}}, {Key: "arr", Value: bson.A{1, 2}}}
	tests := []struct {
		name   string
		update bson.D
		want   string // diff as relaxed Extended JSON
	}{
		{"set existing", bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 2}}}}, `{"u":{"v":2}}`},
		{"set new", bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 1}}}}, `{"i":{"n":1}}`},
		{"unset", bson.D{{Key: "$unset", Value: bson.D{{Key: "x", Value: ""}}}}, `{"d":{"x":false}}`},
		{"nested", bson.D{{Key: "$set", Value: bson.D{{Key: "sub.a", Value: 2}, {Key: "sub.b", Value: 3}}}}, `{"ssub":{"u":{"a":2},"i":{"b":3}}}`},
		{"push", bson.D{{Key: "$push", Value: bson.D{{Key: "arr", Value: 3}}}}, `{"sarr":{"a":true,"u2":3}}`},
		{"mixed", bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 5}, {Key: "n", Value: 1}}}, {Key: "$unset", Value: bson.D{{Key: "x", Value: ""}}}}, `{"d":{"x":false},"u":{"v":5},"i":{"n":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t)
			c := connect(t, s)
			ctx := testCtx(t)
			coll := c.Database("d").Collection("c")
			if _, err := coll.InsertOne(ctx, base); err != nil {
				t.Fatal(err)
			}
			if _, err := coll.UpdateByID(ctx, 1, tt.update); err != nil {
				t.Fatal(err)
			}
			entries := oplogEntries(t, c, bson.D{{Key: "op", Value: "u"}})
			if len(entries) != 1 {
				t.Fatalf("%d update entries", len(entries))
			}
			o := entries[0].Lookup("o").Document()
			if o.Lookup("$v").Int32() != 2 {
				t.Fatalf("o %v", o)
			}
			got, err := bson.MarshalExtJSON(o.Lookup("diff").Document(), false, false)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("diff %s, want %s", got, tt.want)
			}
		})
	}
}
