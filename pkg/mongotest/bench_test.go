package mongotest

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// BenchmarkInsertManyAndWatch inserts 20k documents with InsertMany batches
// of 1000 while a change stream reads all of them. Reported: docs/s.
func BenchmarkInsertManyAndWatch(b *testing.B) {
	const total, batch = 20000, 1000
	s := Start(b)
	c := connect(b, s)
	ctx := context.Background()
	for it := 0; it < b.N; it++ {
		coll := c.Database("bench").Collection("c")
		cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(time.Second))
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			n := 0
			for n < total && cs.Next(ctx) {
				n++
			}
			done <- cs.Err()
		}()
		start := time.Now()
		docs := make([]any, batch)
		for i := 0; i < total/batch; i++ {
			for j := range docs {
				docs[j] = bson.D{{Key: "_id", Value: int64(it*total + i*batch + j)}, {Key: "amount", Value: int64(j)}, {Key: "memo", Value: "transfer"}}
			}
			if _, err := coll.InsertMany(ctx, docs); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(total)/time.Since(start).Seconds(), "docs/s")
		_ = cs.Close(ctx)
	}
}

// BenchmarkInsertOne measures single-document insert round trips.
func BenchmarkInsertOne(b *testing.B) {
	s := Start(b)
	c := connect(b, s)
	ctx := context.Background()
	coll := c.Database("bench").Collection("one")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "v", Value: i}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateOne measures $inc updates on a 100k-document collection.
func BenchmarkUpdateOne(b *testing.B) {
	s := Start(b)
	c := connect(b, s)
	ctx := context.Background()
	coll := c.Database("bench").Collection("upd")
	docs := make([]any, 0, 1000)
	for i := 0; i < 100000; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "bal", Value: int64(0)}})
		if len(docs) == cap(docs) {
			if _, err := coll.InsertMany(ctx, docs); err != nil {
				b.Fatal(err)
			}
			docs = docs[:0]
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: i % 100000}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: int64(1)}}}}); err != nil {
			b.Fatal(err)
		}
	}
}
