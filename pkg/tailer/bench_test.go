package tailer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/tailer"
)

const benchEvents = 50000

func benchBus(b *testing.B) (jetstream.JetStream, bus.StreamsConfig) {
	b.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: -1, StoreDir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(emb.Shutdown)
	nc, err := nats.Connect(emb.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	sc := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: 2 * time.Minute, MaxAge: time.Hour, MaxBytes: -1, CheckpointBucket: "ckpt"}
	if err := bus.Ensure(context.Background(), js, sc); err != nil {
		b.Fatal(err)
	}
	return js, sc
}

// payment-like ~600-byte documents.
func benchDocs(n int) []any {
	docs := make([]any, n)
	amt, _ := bson.ParseDecimal128("1234.567890123456789")
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "amount", Value: amt},
			{Key: "currency", Value: "USDT"}, {Key: "status", Value: "pending"}, {Key: "provider", Value: "request.network"},
			{Key: "direction", Value: "in"}, {Key: "createdAt", Value: bson.NewDateTimeFromTime(time.Now())},
			{Key: "metadata", Value: bson.D{{Key: "sellerId", Value: bson.NewObjectID()}, {Key: "rnRequestId", Value: fmt.Sprintf("01%062d", i)},
				{Key: "note", Value: "a payment document of roughly six hundred bytes for the publish benchmark, padded with text"}}},
			{Key: "buyerId", Value: bson.NewObjectID()}, {Key: "purchaseRequestId", Value: bson.NewObjectID()}}
	}
	return docs
}

// BenchmarkTailerPublish: change stream -> envelope -> JetStream async
// publish with Nats-Msg-Id, acknowledged, events/s.
func BenchmarkTailerPublish(b *testing.B) {
	ctx := context.Background()
	srv := mongotest.Start(b)
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Disconnect(ctx) })
	total := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		js, sc := benchBus(b)
		coll := client.Database("bench").Collection(fmt.Sprintf("payments%d", i))
		start := srv.LatestOplogTime()
		for off := 0; off < benchEvents; off += 1000 {
			if _, err := coll.InsertMany(ctx, benchDocs(1000)); err != nil {
				b.Fatal(err)
			}
		}
		store, err := checkpoint.NewKVStore(ctx, js, sc.CheckpointBucket, "bench")
		if err != nil {
			b.Fatal(err)
		}
		tl := tailer.New(client, js, store, tailer.Config{Database: "bench", Collections: []string{coll.Name()},
			Start:     config.StartPoint{T: start.T, I: start.I},
			BatchSize: 1000, MaxAwait: 100 * time.Millisecond, MaxInFlight: 4096, CheckpointInterval: 50 * time.Millisecond,
			Streams: sc}, zap.NewNop(), nil)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		b.StartTimer()
		go func() { done <- tl.Run(rctx) }()
		for {
			cp, _, err := store.Load(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if cp != nil && cp.Events >= benchEvents {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		total += benchEvents
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRawPublish is the ceiling: JetStream async publish with
// Nats-Msg-Id of the same envelopes, all acknowledged.
func BenchmarkRawPublish(b *testing.B) {
	docs := benchDocs(1000)
	payloads := make([][]byte, len(docs))
	for i, d := range docs {
		raw, _ := bson.Marshal(d)
		ev := &event.Event{V: 1, ID: "x", Op: event.OpInsert, Source: event.Source{DB: "bench", Coll: "payments"},
			Key: raw[:0], Doc: raw}
		key, _ := bson.Marshal(bson.D{{Key: "_id", Value: d.(bson.D)[0].Value}})
		ev.Key = key
		payloads[i], _ = ev.Marshal()
	}
	total := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		js, _ := benchBus(b)
		b.StartTimer()
		for j := 0; j < benchEvents; j++ {
			msg := &nats.Msg{Subject: "cdc.bench.payments", Data: payloads[j%len(payloads)], Header: nats.Header{}}
			msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("raw-%d-%d", i, j))
			if _, err := js.PublishMsgAsync(msg); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publishes not acknowledged")
		}
		total += benchEvents
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}
