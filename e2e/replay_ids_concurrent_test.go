package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	mevent "go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/replay"
	"github.com/amanat/cdc/transforms"
)

func userDoc(id bson.ObjectID, username string) bson.D {
	dec := func(s string) bson.Decimal128 { d, _ := bson.ParseDecimal128(s); return d }
	at := bson.NewDateTimeFromTime(time.Unix(1.7e9, 0))
	return bson.D{{Key: "_id", Value: id}, {Key: "email", Value: id.Hex() + "@example.com"}, {Key: "username", Value: username},
		{Key: "role", Value: "user"}, {Key: "points", Value: bson.D{{Key: "available", Value: dec("0")}, {Key: "used", Value: int32(0)}, {Key: "total", Value: dec("0")}}},
		{Key: "createdAt", Value: at}, {Key: "updatedAt", Value: at}}
}

// TestReplayIDsUnderConcurrentWriter (issue 10, row 6, acceptance 6): a
// writer changes the refreshed documents between the batches of the
// refresh's find (inside the driver, right before its getMore): it
// updates every document (some already returned, some not yet), deletes
// one and inserts one of the requested ids that was missing. The refresh
// events are positioned at a cluster time taken before the find, so
// after the replay and the tailer's events of those writes are applied,
// Postgres equals MongoDB. Positioned at the find's own operationTime
// (taken after its last batch, later than every one of those writes), the
// refreshes would win the version guard over the writes: stale usernames,
// the deleted document back, and the inserted one tombstoned.
func TestReplayIDsUnderConcurrentWriter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))

	uri := os.Getenv("CDC_TEST_MONGO_URI")
	if uri == "" {
		uri = mongotest.Start(t).URI()
	}
	dbName := fmt.Sprintf("cdc_replay_ids_%d_%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	writer, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.Ping(ctx, nil); err != nil {
		t.Fatalf("mongo unreachable at %s: %v", uri, err)
	}
	t.Cleanup(func() {
		_ = writer.Database(dbName).Drop(context.Background())
		_ = writer.Disconnect(context.Background())
	})
	users := writer.Database(dbName).Collection("users")
	_ = writer.Database(dbName).CreateCollection(ctx, "users")
	// Point-in-time images, which the tailer's default full_document mode
	// needs: the command a user runs (MongoDB 6.0+, collMod
	// changeStreamPreAndPostImages).
	if err := writer.Database(dbName).RunCommand(ctx, bson.D{{Key: "collMod", Value: "users"},
		{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}}).Err(); err != nil {
		t.Fatalf("collMod changeStreamPreAndPostImages: %v", err)
	}

	pgURL := pgtest.NewDatabase(t)
	if _, err := migrate.Up(ctx, pgURL, nil); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	nc, js := bustest.Start(t)

	cfg := config.Default()
	cfg.Mongo.URI, cfg.Mongo.Database = uri, dbName
	cfg.Mongo.Collections = []string{"users"}
	cfg.Postgres.URL = pgURL
	cfg.NATS.URL = nc.ConnectedUrl()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Tailer.CheckpointInterval = 100 * time.Millisecond
	cfg.Tailer.MaxAwait = 200 * time.Millisecond
	cfg.Sink.BatchWait = 10 * time.Millisecond
	cfg.HTTP.Addr = ""
	cfg.Log.Level = "warn"
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx, cfg, config.RoleAll, log, app.Options{}) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("replicator: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("replicator did not stop within a minute")
		}
	})

	// 150 documents: more than the find's first batch (101), so the
	// find needs a getMore.
	var ids []bson.ObjectID
	var keys []string
	for range 150 {
		id := bson.NewObjectID()
		ids = append(ids, id)
		keys = append(keys, id.Hex())
	}
	inserted, deleted := bson.NewObjectID(), ids[len(ids)-1]
	keys = append(keys, inserted.Hex())
	// The tailer must be streaming before the first write: a sentinel
	// written until it shows up in Postgres.
	sentinel := func() string {
		t.Helper()
		id := bson.NewObjectID()
		if _, err := users.InsertOne(ctx, userDoc(id, "sentinel-"+id.Hex())); err != nil {
			t.Fatal(err)
		}
		return id.Hex()
	}
	waitSentinel := func(what string) {
		t.Helper()
		waitRow(t, ctx, pool, []string{sentinel()}, what, done, time.Minute)
	}
	// A tailer starting at "now" skips what was written before it opened
	// its change stream: write sentinels until one arrives.
	var written []string
	for start := time.Now(); ; {
		written = append(written, sentinel())
		if waitRow(t, ctx, pool, written, "", done, 500*time.Millisecond) {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatal("the replicator did not stream within a minute: no sentinel reached Postgres")
		}
	}
	for _, id := range ids {
		if _, err := users.InsertOne(ctx, userDoc(id, "before-"+id.Hex())); err != nil {
			t.Fatal(err)
		}
	}
	waitSentinel("the initial documents replicated")

	// The refresh's client runs the writer right before the find's
	// first getMore (the command monitor's Started runs synchronously,
	// before the command is sent: mongo-driver x/mongo/driver/operation.go,
	// publishStartedEvent).
	var once sync.Once
	var hookErr error
	hooked := false
	monitor := &mevent.CommandMonitor{Started: func(_ context.Context, e *mevent.CommandStartedEvent) {
		if e.CommandName != "getMore" || e.Command.Lookup("collection").StringValue() != "users" {
			return
		}
		once.Do(func() {
			hooked = true
			if _, err := users.UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "username", Value: "after"}}}}); err != nil {
				hookErr = err
				return
			}
			if _, err := users.DeleteOne(ctx, bson.D{{Key: "_id", Value: deleted}}); err != nil {
				hookErr = err
				return
			}
			if _, err := users.InsertOne(ctx, userDoc(inserted, "inserted")); err != nil {
				hookErr = err
			}
		})
	}}
	rclient, err := mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(monitor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rclient.Disconnect(context.Background()) })
	set, err := transforms.Load(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := replay.NewRefresher(rclient, js, pool, set, replay.RefreshConfig{Database: dbName, Streams: bus.StreamsFromConfig(&cfg)}, log)
	rep, err := r.IDs(ctx, "users", keys)
	if err != nil {
		t.Fatalf("replay ids: %v", err)
	}
	if !hooked || hookErr != nil {
		t.Fatalf("the concurrent writer did not run between the find's batches (ran: %v, error: %v)", hooked, hookErr)
	}
	if rep.Errors != 0 || rep.Published != int64(len(keys)) {
		t.Fatalf("replay ids: %d errors, %d published, want 0 and %d: %v", rep.Errors, rep.Published, len(keys), rep.Notes)
	}
	// Everything before this sentinel in the stream is resolved once it
	// is in Postgres: the refresh events and the writer's changes.
	waitSentinel("the refresh and the writer's changes applied")

	want := map[string]string{}
	cur, err := users.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: append(ids, inserted)}}}})
	if err != nil {
		t.Fatal(err)
	}
	for cur.Next(ctx) {
		want[cur.Current.Lookup("_id").ObjectID().Hex()] = cur.Current.Lookup("username").StringValue()
	}
	if err := cur.Err(); err != nil {
		t.Fatal(err)
	}
	got := pgUsernames(t, ctx, pool)
	var diff []string
	for _, k := range keys {
		if w, g := want[k], got[k]; w != g {
			diff = append(diff, fmt.Sprintf("%s: mongo %q, postgres %q", k, w, g))
		}
	}
	if len(diff) > 0 {
		sort.Strings(diff)
		t.Fatalf("%d documents differ after replay ids under a concurrent writer (\"\" = no document/row):\n%s",
			len(diff), strings.Join(diff[:min(len(diff), 10)], "\n"))
	}
	if want[inserted.Hex()] != "inserted" || want[deleted.Hex()] != "" || want[ids[0].Hex()] != "after" {
		t.Fatalf("the writer's changes are not in MongoDB: %v", want)
	}
}

// pgUsernames maps each users row's Mongo id to its username.
func pgUsernames(t *testing.T, ctx context.Context, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT m.legacy_object_id, u.username FROM users u
		JOIN id_map m ON m.new_id = u.id AND m.collection = 'users'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, u string
		if err := rows.Scan(&k, &u); err != nil {
			t.Fatal(err)
		}
		out[k] = u
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitRow waits up to within until the users row of one of the Mongo ids
// keys is in Postgres. With what set it fails the test when none is;
// otherwise it reports whether one is. It fails at once if the replicator
// stops (done delivers its error; the error is put back for the cleanup).
func waitRow(t *testing.T, ctx context.Context, pool *pgxpool.Pool, keys []string, what string, done chan error, within time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%s: the replicator stopped: %v", what, err)
		default:
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM users u JOIN id_map m ON m.new_id = u.id AND m.collection = 'users'
			WHERE m.legacy_object_id = ANY($1)`, keys).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	if what != "" {
		t.Fatalf("%s: document %v not in Postgres within %s", what, keys, within)
	}
	return false
}
