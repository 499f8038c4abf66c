package benchkit_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/amanat/cdc/pkg/benchkit"
	"github.com/amanat/cdc/pkg/mongotest"
)

func mongoDB(t *testing.T) (*mongotest.Server, *mongo.Database) {
	t.Helper()
	srv := mongotest.Start(t)
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatalf("mongo connect: %v", err)
	}
	t.Cleanup(func() { _ = client.Disconnect(ctx) })
	db := client.Database("bench")
	for _, c := range benchkit.Collections {
		if err := db.CreateCollection(ctx, c); err != nil {
			t.Fatalf("create %s: %v", c, err)
		}
	}
	return srv, db
}

// TestWriteBacklogKeepsParentsFirst: the batched writer leaves MongoDB
// with the workload's documents, and its change stream (what the tailer
// reads) has every referenced document inserted before the reference and
// every ledger entry inside a transaction (fundsLedger rejects a missing
// parent).
func TestWriteBacklogKeepsParentsFirst(t *testing.T) {
	srv, db := mongoDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := srv.LatestOplogTime() // the last create
	start.I++
	gen := benchkit.NewWorkload(benchkit.WorkloadOptions{Seed: 5, Sellers: 20})
	w, err := benchkit.NewWriter(ctx, db, 300)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	n, err := benchkit.WriteBacklog(ctx, gen, w, 4000)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	st := gen.Stats()
	if n != st.Events || w.Stats.Events != n || n < 4000 || n > 4002 {
		t.Fatalf("wrote %d events, the generator made %d, the writer counted %d: want 4000-4002, all equal", n, st.Events, w.Stats.Events)
	}
	if w.Stats.Transactions != st.Transactions || w.Stats.BulkWrites == 0 {
		t.Fatalf("writer stats %+v, generator transactions %d", w.Stats, st.Transactions)
	}
	for _, c := range benchkit.Collections {
		got, err := db.Collection(c).CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		if int(got) != st.Live[c] {
			t.Errorf("%s holds %d documents, the workload left %d", c, got, st.Live[c])
		}
	}

	cs, err := db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&start))
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer cs.Close(ctx)
	inserted := map[bson.ObjectID]bool{}
	for i := 0; i < n; i++ {
		if !cs.Next(ctx) {
			t.Fatalf("change stream ended after %d of %d events: %v", i, n, cs.Err())
		}
		ev := cs.Current
		coll := ev.Lookup("ns", "coll").StringValue()
		id := ev.Lookup("documentKey", "_id").ObjectID()
		switch op := ev.Lookup("operationType").StringValue(); op {
		case "insert":
			var doc bson.D
			if err := ev.Lookup("fullDocument").Unmarshal(&doc); err != nil {
				t.Fatal(err)
			}
			for _, ref := range refsOf(t, coll, doc) {
				if !inserted[ref] {
					t.Fatalf("event %d: %s %s references %s before it is inserted (or after its delete)", i, coll, id.Hex(), ref.Hex())
				}
			}
			inserted[id] = true
			if coll == benchkit.CollFundsLedger {
				if _, ok := ev.Lookup("txnNumber").AsInt64OK(); !ok {
					t.Fatalf("event %d: a ledger entry outside a transaction", i)
				}
			}
		case "delete":
			delete(inserted, id)
		case "update":
			if !inserted[id] {
				t.Fatalf("event %d: update of %s %s before its insert", i, coll, id.Hex())
			}
		default:
			t.Fatalf("event %d: unexpected %s", i, op)
		}
	}
}

// TestPaceWritesTheOfferedRate: the paced writer writes rate x duration
// events (its ops finished within the tick) and keeps the schedule.
func TestPaceWritesTheOfferedRate(t *testing.T) {
	_, db := mongoDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gen := benchkit.NewWorkload(benchkit.WorkloadOptions{Seed: 9, Sellers: 10, Clock: time.Now})
	w, err := benchkit.NewWriter(ctx, db, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx)
	if _, err := benchkit.WriteBacklog(ctx, gen, w, gen.PrologueEvents()); err != nil {
		t.Fatal(err)
	}
	res, err := benchkit.Pace(ctx, gen, w, 1000, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("pace: %v", err)
	}
	if res.Events < 500 || res.Events > 503 || res.Elapsed < 450*time.Millisecond {
		t.Fatalf("paced %d events in %s, want 500-503 in about 500ms", res.Events, res.Elapsed)
	}
	if gen.Pending() != 0 {
		t.Fatalf("%d ops of a started step left unwritten", gen.Pending())
	}
}
