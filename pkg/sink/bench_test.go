package sink_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"
)

// Benchmarks measure with fsync on, as production runs. goleak fails the
// run if a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithShared(m, pgtest.Options{Fsync: true}))
}

// migratedDB is a fresh, migrated database's pool (closed with the test)
// and the built-in mappings: what every test and benchmark of the package
// applies to.
func migratedDB(tb testing.TB, ctx context.Context) (*pgxpool.Pool, *transform.Set) {
	tb.Helper()
	url := pgtest.NewDatabase(tb)
	if _, err := migrate.Up(ctx, url, nil); err != nil {
		tb.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	set, err := transform.Load(transforms.Builtin, ".")
	if err != nil {
		tb.Fatal(err)
	}
	return pool, set
}

// userEvents makes n insert events of ~600-byte user documents.
func userEvents(b *testing.B, n int, ct uint32) ([]sink.Raw, []bson.Raw) {
	b.Helper()
	msgs := make([]sink.Raw, n)
	docs := make([]bson.Raw, n)
	for i := 0; i < n; i++ {
		oid := bson.NewObjectID()
		pts, _ := bson.ParseDecimal128(fmt.Sprintf("%d.123456789012345678", i))
		doc, _ := bson.Marshal(bson.D{
			{Key: "_id", Value: oid},
			{Key: "email", Value: fmt.Sprintf("user%d-%d@example.com", ct, i)},
			{Key: "firstName", Value: "Firstname"}, {Key: "lastName", Value: "Lastname-Lastname"},
			{Key: "username", Value: fmt.Sprintf("user_%d_%d", ct, i)}, {Key: "phone", Value: "+15550000000"},
			{Key: "telegramId", Value: int64(ct)*1e6 + int64(i)}, {Key: "role", Value: "user"},
			{Key: "walletAddress", Value: "0x52908400098527886E0F7030069857D2E4169EE7"},
			{Key: "isVerified", Value: true}, {Key: "referralCode", Value: fmt.Sprintf("REF%d-%08d", ct, i)},
			{Key: "points", Value: bson.D{{Key: "available", Value: pts}, {Key: "used", Value: int32(0)}, {Key: "total", Value: pts}}},
			{Key: "profile", Value: bson.D{{Key: "bio", Value: "a short biography of this user for the benchmark"}, {Key: "lang", Value: "en"}}},
			{Key: "createdAt", Value: bson.NewDateTimeFromTime(time.Now())},
			{Key: "updatedAt", Value: bson.NewDateTimeFromTime(time.Now())},
		})
		docs[i] = doc
		key, _ := bson.Marshal(bson.D{{Key: "_id", Value: oid}})
		ev := &event.Event{V: 1, ID: fmt.Sprintf("bench:%d:%s", ct, oid.Hex()), Op: event.OpInsert,
			Source: event.Source{DB: "escrow", Coll: "users", ClusterTime: event.ClusterTime{T: ct, I: uint32(i + 1)}},
			Key:    key, Doc: doc}
		data, err := ev.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = sink.Raw{Seq: uint64(i + 1), Data: data}
	}
	return msgs, docs
}

const benchBatch = 1000

// BenchmarkSinkApply is the sink's apply rate on the users table (decode,
// transform, version guard, id_map, upsert, one transaction per 1000
// events, the next batch prepared while one applies, as in the live sink),
// reported as events/s.
func BenchmarkSinkApply(b *testing.B) {
	pool, set := migratedDB(b, context.Background())
	a := sink.NewApplier(pool, set, "bench", "CDC")
	ctx := context.Background()
	const n = 20000
	b.ResetTimer()
	total := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		msgs, _ := userEvents(b, n, uint32(1000+i))
		b.StartTimer()
		// As the live sink does: the next batch is decoded and transformed
		// while the current one applies.
		prepared := make(chan sink.Batch, 1)
		go func() {
			for off := 0; off < n; off += benchBatch {
				prepared <- sink.NewBatch(set, msgs[off:off+benchBatch])
			}
			close(prepared)
		}()
		for p := range prepared {
			res, err := a.Apply(ctx, p)
			if err != nil {
				b.Fatal(err)
			}
			if res.Applied != benchBatch {
				var reason string
				_ = pool.QueryRow(ctx, `SELECT reason FROM cdc.dead_letters LIMIT 1`).Scan(&reason)
				b.Logf("dead letter: %s", reason)
				b.Fatalf("applied %d of %d (dead-lettered %d)", res.Applied, benchBatch, res.DeadLettered)
			}
		}
		total += n
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRawCopy is the ceiling: COPY of the same transformed rows into
// the same table, 1000 rows per transaction, ids precomputed.
func BenchmarkRawCopy(b *testing.B) {
	pool, set := migratedDB(b, context.Background())
	m, _ := set.Get("users")
	ctx := context.Background()
	const n = 20000
	cols := m.ColumnNames()
	b.ResetTimer()
	total := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		_, docs := userEvents(b, n, uint32(1000+i))
		rows := make([][]any, n)
		for j, d := range docs {
			r, err := m.Row(d)
			if err != nil {
				b.Fatal(err)
			}
			rows[j] = append([]any{uuid.New()}, r.Values...)
		}
		b.StartTimer()
		for off := 0; off < n; off += benchBatch {
			if _, err := pool.CopyFrom(ctx, pgx.Identifier{"users"}, cols, pgx.CopyFromRows(rows[off:off+benchBatch])); err != nil {
				b.Fatal(err)
			}
		}
		total += n
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "rows/s")
}
