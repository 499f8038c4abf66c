package replay_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/replay"
)

// TestReplayIDsTypedKeys (issue 14, item 2): replay ids names each
// document by its typed key. ObjectId(X) and the string X are two
// documents, each refreshed by its own key; a numeric key finds the
// document of that value whatever its numeric type (the refresh carries
// the _id as MongoDB stores it), and {"$numberInt":"7"} given by an
// operator is the same document as the stored key {"$numberLong":"7"}; the
// string '{"$numberInt":"7"}' is a third document; an upper-case ObjectId
// is the ObjectId; a number that is not there becomes one delete.
func TestReplayIDsTypedKeys(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := mongotest.Start(t)
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	const db = "cdc_typed_ids"
	oid := bson.NewObjectID()
	x := oid.Hex()
	ids := []any{oid, x, int32(7), `{"$numberInt":"7"}`}
	for i, id := range ids {
		if _, err := client.Database(db).Collection("users").InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "n", Value: int32(i)}}); err != nil {
			t.Fatalf("insert _id %T %v: %v", id, id, err)
		}
	}
	pool, set := migratedTarget(ctx, t)
	_, js := bustest.Start(t)
	streams := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: 2 * time.Minute, MaxAge: 24 * time.Hour, MaxBytes: -1, CheckpointBucket: "cdc_checkpoints"}
	if err := bus.Ensure(ctx, js, streams); err != nil {
		t.Fatal(err)
	}
	r := replay.NewRefresher(client, js, pool, set, replay.RefreshConfig{Database: db, Streams: streams},
		zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))

	rep, err := r.IDs(ctx, "users", []string{
		x, `"` + x + `"`, `{"$numberInt":"7"}`, `{"$numberLong":"7"}`, `"{\"$numberInt\":\"7\"}"`,
		strings.ToUpper(x),        // upper case: the ObjectId again
		`{"$numberDouble":"8.0"}`, // not in MongoDB
	})
	if err != nil {
		t.Fatalf("replay ids: %v", err)
	}
	if rep.Published != 5 || rep.Errors != 0 {
		t.Fatalf("replay ids published %d (errors %d), want 5 (four documents, one delete): %v", rep.Published, rep.Errors, rep.Notes)
	}
	type got struct {
		op event.Op
		id bson.RawValue
	}
	byKey := map[string]got{}
	for _, ev := range streamEvents(t, ctx, js, streams.Stream, 5) {
		k, err := ev.DocKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := byKey[k]; dup {
			t.Fatalf("two events for the key %s", k)
		}
		byKey[k] = got{ev.Op, ev.Key.Lookup("_id")}
	}
	for _, w := range []struct {
		key string
		op  event.Op
		typ bson.Type
	}{
		{x, event.OpRefresh, bson.TypeObjectID},
		{`"` + x + `"`, event.OpRefresh, bson.TypeString},
		{`{"$numberLong":"7"}`, event.OpRefresh, bson.TypeInt32}, // the _id as stored
		{`"{\"$numberInt\":\"7\"}"`, event.OpRefresh, bson.TypeString},
		{`{"$numberLong":"8"}`, event.OpDelete, bson.TypeInt64},
	} {
		g, ok := byKey[w.key]
		if !ok {
			t.Fatalf("no event for the key %s (events: %v)", w.key, byKey)
		}
		if g.op != w.op || g.id.Type != w.typ {
			t.Fatalf("key %s: %s of a %s _id, want %s of a %s _id", w.key, g.op, g.id.Type, w.op, w.typ)
		}
	}

	// A key that names no _id is refused before anything is read.
	if _, err := r.IDs(ctx, "users", []string{x, `{"$numberInt":`}); !errors.Is(err, event.ErrBadKey) {
		t.Fatalf("replay ids with a malformed key: %v, want ErrBadKey", err)
	}
}

// streamEvents reads the first n events of stream.
func streamEvents(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string, n int) []*event.Event {
	t.Helper()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*event.Event
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for msg := range batch.Messages() {
			ev, err := bus.DecodeEventMsg(ctx, js, msg)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ev)
			got++
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if got == 0 {
			t.Fatalf("%d events in %s, want %d", len(out), stream, n)
		}
	}
	return out
}
