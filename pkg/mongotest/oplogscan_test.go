package mongotest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestOplogTsBoundedScan: a query on local.oplog.rs with a top-level ts
// predicate is answered from the bounded range of the oplog (oplogscan.go)
// and returns exactly what the same filter returns when it cannot be
// bounded ({$and: [filter]}, read whole), in both natural orders, with and
// without a limit; the oplog it searches is in optime order, transactions'
// applyOps entries included.
func TestOplogTsBoundedScan(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("bank").Collection("accounts")
	for i := range 20 {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
		if i%5 == 4 {
			runTxn(t, c, func(sc context.Context) error {
				for j := range 3 {
					if _, err := coll.InsertOne(sc, bson.D{{Key: "_id", Value: fmt.Sprintf("t%d-%d", i, j)}}); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	s.mu.Lock()
	ordered := slices.IsSortedFunc(s.oplog, func(a, b *oplogEntry) int { return a.oplogTs().Compare(b.oplogTs()) })
	s.mu.Unlock()
	if !ordered {
		t.Fatal("the oplog is not in optime order: a bounded scan would miss entries")
	}

	oplog := c.Database("local").Collection("oplog.rs")
	all := oplogTimes(t, ctx, oplog, bson.D{}, options.Find())
	if len(all) < 24 {
		t.Fatalf("%d oplog entries, want at least 24", len(all))
	}
	mid, last := all[len(all)/2], all[len(all)-1]
	between := bson.Timestamp{T: mid.T, I: mid.I}
	if next := all[len(all)/2+1]; next.T == mid.T && next.I > mid.I+1 {
		between.I++ // a time between two entries, when there is one
	}
	after := bson.Timestamp{T: last.T + 1}
	filters := map[string]bson.D{
		"eq":            {{Key: "ts", Value: mid}},
		"$eq":           {{Key: "ts", Value: bson.D{{Key: "$eq", Value: mid}}}},
		"eq between":    {{Key: "ts", Value: between}},
		"gte":           {{Key: "ts", Value: bson.D{{Key: "$gte", Value: mid}}}},
		"gt":            {{Key: "ts", Value: bson.D{{Key: "$gt", Value: mid}}}},
		"lte":           {{Key: "ts", Value: bson.D{{Key: "$lte", Value: mid}}}},
		"lt":            {{Key: "ts", Value: bson.D{{Key: "$lt", Value: mid}}}},
		"gte and lt":    {{Key: "ts", Value: bson.D{{Key: "$gte", Value: all[3]}, {Key: "$lt", Value: mid}}}},
		"gt and gte":    {{Key: "ts", Value: bson.D{{Key: "$gte", Value: mid}, {Key: "$gt", Value: mid}}}},
		"gt last":       {{Key: "ts", Value: bson.D{{Key: "$gt", Value: last}}}},
		"after the end": {{Key: "ts", Value: bson.D{{Key: "$gte", Value: after}}}},
		"empty range":   {{Key: "ts", Value: bson.D{{Key: "$gt", Value: mid}, {Key: "$lt", Value: mid}}}},
		"and another":   {{Key: "ts", Value: bson.D{{Key: "$gte", Value: all[2]}}}, {Key: "op", Value: "c"}},
	}
	for name, f := range filters {
		for _, dir := range []int{1, -1} {
			for _, limit := range []int64{0, 1, 2} {
				opts := func() *options.FindOptionsBuilder {
					return options.Find().SetSort(bson.D{{Key: "$natural", Value: dir}}).SetLimit(limit)
				}
				got := oplogTimes(t, ctx, oplog, f, opts())
				want := oplogTimes(t, ctx, oplog, bson.D{{Key: "$and", Value: bson.A{f}}}, opts())
				if !slices.Equal(got, want) {
					t.Errorf("%s, $natural %d, limit %d: bounded scan %v, full scan %v", name, dir, limit, got, want)
				}
			}
		}
	}
}

// oplogTimes runs find on the oplog and returns the entries' ts in order.
func oplogTimes(t *testing.T, ctx context.Context, oplog *mongo.Collection, filter bson.D, opts *options.FindOptionsBuilder) []bson.Timestamp {
	t.Helper()
	cur, err := oplog.Find(ctx, filter, opts.SetProjection(bson.D{{Key: "ts", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close(ctx)
	var out []bson.Timestamp
	for cur.Next(ctx) {
		tt, i, ok := cur.Current.Lookup("ts").TimestampOK()
		if !ok {
			t.Fatalf("oplog entry without ts: %s", cur.Current)
		}
		out = append(out, bson.Timestamp{T: tt, I: i})
	}
	if err := cur.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkOplogTsLookup: the lookup ResumeFloor makes (find {ts: T},
// limit 1) of the newest entry of a 200,000-entry oplog. Unbounded, it
// read every entry before T.
func BenchmarkOplogTsLookup(b *testing.B) {
	s := startServer(b)
	c := connect(b, s)
	ctx := testCtx(b)
	coll := c.Database("bank").Collection("accounts")
	docs := make([]any, 1000)
	for k := range 200 {
		for i := range docs {
			docs[i] = bson.D{{Key: "_id", Value: k*1000 + i}}
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			b.Fatal(err)
		}
	}
	last := s.LatestOplogTime()
	oplog := c.Database("local").Collection("oplog.rs")
	b.ResetTimer()
	for range b.N {
		if err := oplog.FindOne(ctx, bson.D{{Key: "ts", Value: last}}).Err(); err != nil {
			b.Fatal(err)
		}
	}
}
