package e2e

import (
	"fmt"
	"github.com/amanat/cdc/pkg/app"
	"go.mongodb.org/mongo-driver/v2/bson"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkEndToEndBacklog: a backlog of events written to Mongo before
// the replicator starts, drained through tailer -> JetStream (embedded,
// file store) -> sink -> Postgres (fsync on), events/s. The Mongo wire
// test server runs in the same process and competes for the two cores.
func BenchmarkEndToEndBacklog(b *testing.B) {
	const n = 100000
	total := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b)
		nats := e.startNATS()
		cfg := e.config(nats.url(), e.dir)
		cfg.Tailer.StartAt = e.startAt()
		l := newLoad(e, uint64(100+i))
		c := e.client.Database(e.dbName).Collection("widgets")
		for off := 0; off < n; off += 1000 {
			docs := make([]any, 1000)
			for j := range docs {
				docs[j] = l.doc("widgets", bson.NewObjectID(), 1)
			}
			if _, err := c.InsertMany(e.ctx, docs); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		stop := e.runApp(cfg, app.Options{})
		for e.count(e.ctx, `SELECT count(*) FROM widgets`) < n {
			time.Sleep(20 * time.Millisecond)
		}
		b.StopTimer()
		if err := stop(); err != nil {
			b.Fatal(err)
		}
		total += n
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkLagAtSteadyRate: 2,000 inserts/s for 10 s through the whole
// pipeline; the lag of each event is the Postgres commit-side clock minus
// the time the test wrote it to Mongo. Reports p50 and p99 in ms.
func BenchmarkLagAtSteadyRate(b *testing.B) {
	const rate, seconds = 2000, 10
	for i := 0; i < b.N; i++ {
		e := newEnv(b)
		_, err := e.pool.Exec(e.ctx, `
			CREATE TABLE cdc.bench_seen (id uuid PRIMARY KEY, seen timestamptz NOT NULL);
			CREATE FUNCTION cdc.bench_seen() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO cdc.bench_seen VALUES (NEW.id, clock_timestamp()) ON CONFLICT DO NOTHING; RETURN NEW; END $$;
			CREATE TRIGGER bench_seen AFTER INSERT ON widgets FOR EACH ROW EXECUTE FUNCTION cdc.bench_seen();`)
		if err != nil {
			b.Fatal(err)
		}
		nats := e.startNATS()
		cfg := e.config(nats.url(), e.dir)
		cfg.Tailer.StartAt = e.startAt()
		stop := e.runApp(cfg, app.Options{})
		l := newLoad(e, 200)
		c := e.client.Database(e.dbName).Collection("widgets")
		tick := time.NewTicker(10 * time.Millisecond) // 20 docs per tick
		start := time.Now()
		for sent := 0; sent < rate*seconds; {
			<-tick.C
			docs := make([]any, rate/100)
			for j := range docs {
				d := l.doc("widgets", bson.NewObjectID(), 1)
				d[7].Value = bson.NewDateTimeFromTime(time.Now()) // updatedAt: write time
				docs[j] = d
			}
			if _, err := c.InsertMany(e.ctx, docs); err != nil {
				b.Fatal(err)
			}
			sent += len(docs)
		}
		tick.Stop()
		if took := time.Since(start); took > seconds*time.Second*12/10 {
			b.Fatalf("the load generator fell behind: %s for %ds", took, seconds)
		}
		for e.count(e.ctx, `SELECT count(*) FROM cdc.bench_seen`) < rate*seconds {
			time.Sleep(50 * time.Millisecond)
		}
		if err := stop(); err != nil {
			b.Fatal(err)
		}
		rows, err := e.pool.Query(e.ctx, `SELECT extract(epoch from (s.seen - w.updated_at)) * 1000
			FROM cdc.bench_seen s JOIN widgets w ON w.id = s.id`)
		if err != nil {
			b.Fatal(err)
		}
		var lags []float64
		for rows.Next() {
			var ms float64
			if err := rows.Scan(&ms); err != nil {
				b.Fatal(err)
			}
			lags = append(lags, ms)
		}
		rows.Close()
		sort.Float64s(lags)
		p := func(q float64) float64 { return lags[int(q*float64(len(lags)-1))] }
		b.ReportMetric(p(0.50), "p50_lag_ms")
		b.ReportMetric(p(0.99), "p99_lag_ms")
		b.ReportMetric(lags[len(lags)-1], "max_lag_ms")
	}
}

// BenchmarkBacklogMillionRSS: 1,000,000 changes written to Mongo first,
// then drained by the cdc binary (its own process, embedded JetStream
// file store, Postgres fsync on); reports the drain rate and the
// process's resident memory (VmRSS, sampled every 500 ms): its peak, and
// its level at the first and last quarter of the drain, to show whether
// it grows.
func BenchmarkBacklogMillionRSS(b *testing.B) {
	const n = 1000000
	for i := 0; i < b.N; i++ {
		e := newEnv(b)
		cfg := e.config("", filepath.Join(e.dir, "data"))
		cfg.Tailer.StartAt = e.startAt()
		cfgPath := e.writeConfig(cfg)
		l := newLoad(e, uint64(300+i))
		c := e.client.Database(e.dbName).Collection("gadgets")
		for off := 0; off < n; off += 5000 {
			docs := make([]any, 5000)
			for j := range docs {
				docs[j] = l.doc("gadgets", bson.NewObjectID(), 1)
			}
			if _, err := c.InsertMany(e.ctx, docs); err != nil {
				b.Fatal(err)
			}
		}
		// CDC_BENCH_CHILD_GOMEMLIMIT sets GOMEMLIMIT for the cdc process only
		// (the test process holds the Mongo test server's million documents).
		if v := os.Getenv("CDC_BENCH_CHILD_GOMEMLIMIT"); v != "" {
			b.Setenv("GOMEMLIMIT", v)
		}
		start := time.Now()
		p := e.startProcess(cfgPath)
		var samples []int64
		for {
			samples = append(samples, rssKB(p.cmd.Process.Pid))
			if e.count(e.ctx, `SELECT count(*) FROM gadgets`) >= n {
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("backlog not drained in 10 min:\n%s", p.tail())
			}
			time.Sleep(500 * time.Millisecond)
		}
		took := time.Since(start)
		if code := p.terminate(); code != 0 {
			b.Fatalf("cdc exited %d:\n%s", code, p.tail())
		}
		peak, q := int64(0), len(samples)/4
		for _, s := range samples {
			peak = max(peak, s)
		}
		avg := func(xs []int64) float64 {
			var t int64
			for _, x := range xs {
				t += x
			}
			return float64(t) / float64(max(len(xs), 1)) / 1024
		}
		b.ReportMetric(float64(n)/took.Seconds(), "events/s")
		b.ReportMetric(float64(peak)/1024, "peak_rss_MB")
		b.ReportMetric(avg(samples[q:2*q]), "rss_2nd_quarter_MB")
		b.ReportMetric(avg(samples[len(samples)-q:]), "rss_last_quarter_MB")
	}
}

// rssKB reads a process's VmRSS in kB (0 when unreadable).
func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}
