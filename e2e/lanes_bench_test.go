package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/state"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// benchLanes are the six lanes of BenchmarkSinkInstances, one collection
// each (lane l<i> holds collection c<i>, table c<i>).
const benchLanes = 6

// benchLaneYAML is lane collection c<i>'s transform (the gadgets shape).
const benchLaneYAML = `version: 1
collection: %[1]s
table: %[1]s
id: {column: id, type: uuid}
columns:
  - {column: label, field: label, type: text}
  - {column: weight, field: specs.weight, type: "numeric(20,6)"}
  - {column: active, field: active, type: bool}
  - {column: v, field: v, type: bigint, required: true}
`

// BenchmarkSinkInstances (issue 11, acceptance 5): a backlog of 100,000
// inserts over six lanes, written to Mongo and published by the real
// tailer once, then drained into a fresh Postgres database by one, two
// and three sink instances (each app.Run with role sink and its own
// Postgres pool, in this process). The time runs from the instances'
// start to every lane's position row reaching its stream's last sequence,
// so it includes the first rebalance (instances join within a heartbeat).
// Reports events/s, the CPU cores this process used (the sinks, the
// embedded NATS server, the Mongo emulator idle) and the machine's busy
// cores (Postgres included) over the drain.
func BenchmarkSinkInstances(b *testing.B) {
	const n = 100000
	colls := make([]string, benchLanes)
	var lanes []string
	for i := range colls {
		colls[i] = fmt.Sprintf("c%d", i)
		lanes = append(lanes, fmt.Sprintf("l%d:c%d", i, i))
	}
	e := newBaseEnv(b, "cdc_lanebench", colls)
	e.tdir = filepath.Join(e.dir, "transforms")
	must(b, os.MkdirAll(e.tdir, 0o755))
	for _, c := range colls {
		must(b, os.WriteFile(filepath.Join(e.tdir, c+".yaml"), []byte(fmt.Sprintf(benchLaneYAML, c)), 0o644))
	}
	nats := e.startNATS()
	base := e.config(nats.url(), e.dir)
	base.Sink.Lanes = lanes
	base.Tailer.StartAt = e.startAt()

	// The backlog: Mongo first, then the tailer publishes it by lane.
	l := newLoad(e, 11)
	for off := 0; off < n; off += 1000 {
		docs := make([]any, 1000)
		for j := range docs {
			docs[j] = l.doc("gadgets", bson.NewObjectID(), 1)
		}
		c := colls[(off/1000)%benchLanes]
		if _, err := e.client.Database(e.dbName).Collection(c).InsertMany(e.ctx, docs); err != nil {
			b.Fatal(err)
		}
	}
	js := e.js()
	tailStart := time.Now()
	stopTail := e.runAppRole(base, config.RoleTailer, app.Options{})
	benchWaitFor(b, "the tailer published the backlog", 10*time.Minute, func() (bool, string) {
		got := benchLaneMessages(e.ctx, b, js, base)
		return got >= n, fmt.Sprintf("%d of %d published", got, n)
	})
	must(b, stopTail())
	b.Logf("tailer published %d events in %s", n, time.Since(tailStart).Round(time.Millisecond))
	if got := benchLaneMessages(e.ctx, b, js, base); got != n {
		b.Fatalf("lane streams hold %d events, want %d", got, n)
	}

	for _, instances := range []int{1, 2, 3} {
		b.Run(strconv.Itoa(instances), func(b *testing.B) {
			events, settle, busy, machine := 0.0, 0.0, 0.0, 0.0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				cfg := base
				// A fresh target database and fresh consumers (the backlog
				// stays in the lane streams).
				cfg.Postgres.URL = benchTarget(e.ctx, b, colls)
				cfg.Sink.Consumer = fmt.Sprintf("bench%d_%d", instances, i)
				pool, err := pgxpool.New(e.ctx, cfg.Postgres.URL)
				must(b, err)
				// The gate holds every lane's sink after its first commit
				// until the lanes are settled on the instances the
				// assignment gives them, so the rate measured is the
				// instances' own, not the start-up rebalance's (a lane
				// handed over waits for the standby poll, 2 s).
				gate := make(chan struct{})
				hooks := &sink.Hooks{AfterCommit: func(ctx context.Context) error {
					select {
					case <-gate:
					case <-ctx.Done(): // stopped by a reassignment: the commit stands
					}
					return nil
				}}
				applied := func() (int64, error) {
					var a int64
					err := pool.QueryRow(e.ctx, `SELECT coalesce(sum(stream_seq), 0) FROM cdc.sink_positions WHERE consumer LIKE $1`,
						cfg.Sink.Consumer+"\\_%").Scan(&a)
					return a, err
				}
				settleStart := time.Now()
				stops := make([]func() error, instances)
				for k := range stops {
					c := cfg
					c.Sink.Instance = fmt.Sprintf("bench-%d-%d-%d", instances, i, k)
					stops[k] = e.runAppRole(c, config.RoleSink, app.Options{SinkHooks: hooks})
				}
				benchWaitFor(b, "lanes settled on their assigned instances", 2*time.Minute, func() (bool, string) {
					return benchSettled(e.ctx, js, pool, cfg, instances)
				})
				settle += time.Since(settleStart).Seconds()
				before, err := applied()
				must(b, err)
				cpu := benchStartCPU()
				b.StartTimer()
				close(gate)
				benchWaitFor(b, "every lane drained", 10*time.Minute, func() (bool, string) {
					a, err := applied()
					if err != nil {
						return false, err.Error()
					}
					return a >= n, fmt.Sprintf("%d of %d applied", a, n)
				})
				b.StopTimer()
				events += float64(n - before)
				p, m := cpu.stop()
				busy, machine = busy+p, machine+m
				var rows int64
				for _, c := range colls {
					var k int64
					must(b, pool.QueryRow(e.ctx, `SELECT count(*) FROM `+c).Scan(&k))
					rows += k
				}
				if rows != n {
					b.Fatalf("%d rows applied, want %d", rows, n)
				}
				holders := benchLaneHolders(e.ctx, b, pool, cfg.Sink.Consumer)
				b.Logf("%d instances: lanes held at the end by %v", instances, holders)
				var wg sync.WaitGroup
				for _, stop := range stops {
					wg.Add(1)
					go func() { defer wg.Done(); must(b, stop()) }()
				}
				wg.Wait()
				pool.Close()
				b.StartTimer()
			}
			b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(settle/float64(b.N), "settle-s")
			b.ReportMetric(busy/float64(b.N), "proc-cores")
			b.ReportMetric(machine/float64(b.N), "machine-cores")
		})
	}
}

// benchWaitFor polls cond every 20 ms until it holds, failing after timeout
// with its last description.
func benchWaitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, desc)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// benchLaneMessages sums the messages of cfg's lane streams.
func benchLaneMessages(ctx context.Context, t testing.TB, js jetstream.JetStream, cfg config.Config) uint64 {
	t.Helper()
	var sum uint64
	for _, l := range bus.ConfiguredLanes(&cfg) {
		st, err := js.Stream(ctx, bus.StreamsFromConfig(&cfg).LaneStream(l.Name))
		if err != nil {
			return 0 // declared by the tailer at start-up
		}
		info, err := st.Info(ctx)
		must(t, err)
		sum += info.State.Msgs
	}
	return sum
}

// benchSettled: instances sink instances are live members and every lane's
// fence is held by the member the assignment gives it.
func benchSettled(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, cfg config.Config, instances int) (bool, string) {
	owners, err := sink.MemberOwners(ctx, js, cfg.NATS.Stream)
	if err != nil {
		return false, err.Error()
	}
	if len(owners) != instances {
		return false, fmt.Sprintf("%d of %d members live", len(owners), instances)
	}
	var names []string
	for _, l := range bus.ConfiguredLanes(&cfg) {
		names = append(names, l.Name)
	}
	want := sink.AssignOwners(names, owners)
	for _, l := range names {
		consumer := sink.LaneConsumer(cfg.Sink.Consumer, l)
		var owner string
		err := pool.QueryRow(ctx, `SELECT coalesce(owner, '') FROM cdc.sink_positions WHERE consumer = $1`, consumer).Scan(&owner)
		if err != nil {
			return false, fmt.Sprintf("lane %s: %v", l, err)
		}
		held, err := state.FenceHeld(ctx, pool, consumer)
		if err != nil {
			return false, err.Error()
		}
		if owner != want[l] || !held {
			return false, fmt.Sprintf("lane %s taken by %q (lock held %v), assigned to %q", l, owner, held, want[l])
		}
	}
	return true, ""
}

// benchTarget is a fresh, migrated Postgres database with the lane
// collections' tables.
func benchTarget(ctx context.Context, t testing.TB, colls []string) string {
	t.Helper()
	url := pgtest.NewDatabase(t)
	if _, err := migrate.Up(ctx, url, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(ctx, url)
	must(t, err)
	defer pool.Close()
	for _, c := range colls {
		if _, err := pool.Exec(ctx, `CREATE TABLE `+c+` (id uuid PRIMARY KEY, label text, weight numeric(20,6), active boolean, v bigint NOT NULL)`); err != nil {
			t.Fatal(err)
		}
	}
	return url
}

// benchLaneHolders is the fence owner of each lane position of consumer.
func benchLaneHolders(ctx context.Context, t testing.TB, pool *pgxpool.Pool, consumer string) map[string]string {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT consumer, coalesce(owner, '') FROM cdc.sink_positions WHERE consumer LIKE $1 ORDER BY consumer`, consumer+"\\_%")
	must(t, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var c, o string
		must(t, rows.Scan(&c, &o))
		out[strings.TrimPrefix(c, consumer+"_")] = o
	}
	must(t, rows.Err())
	return out
}

// benchCPUSample is the process's and the machine's CPU time at a start.
type benchCPUSample struct {
	at             time.Time
	proc           float64 // seconds
	busy, total    float64 // machine jiffies
	ticksPerSecond float64
}

func benchStartCPU() benchCPUSample {
	s := benchCPUSample{at: time.Now(), ticksPerSecond: 100} // USER_HZ is 100 on Linux
	s.proc = benchProcCPU(s.ticksPerSecond)
	s.busy, s.total = benchMachineCPU()
	return s
}

// stop returns the cores this process and the machine kept busy since s
// (0 where /proc could not be read).
func (s benchCPUSample) stop() (proc, machine float64) {
	wall := time.Since(s.at).Seconds()
	busy, total := benchMachineCPU()
	if total > s.total {
		cores := float64(benchCPUs())
		machine = (busy - s.busy) / (total - s.total) * cores
	}
	return (benchProcCPU(s.ticksPerSecond) - s.proc) / wall, machine
}

// benchProcCPU is this process's user+system time (/proc/self/stat fields 14
// and 15, proc(5)).
func benchProcCPU(hz float64) float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / hz
}

// benchMachineCPU is the machine's busy and total jiffies (/proc/stat "cpu"
// line, proc(5): idle and iowait are not busy).
func benchMachineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		if i >= 8 { // guest times are already in user and nice
			break
		}
		total += x
		if i != 3 && i != 4 {
			busy += x
		}
	}
	return busy, total
}

func benchCPUs() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 1
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "cpu") && len(l) > 3 && l[3] >= '0' && l[3] <= '9' {
			n++
		}
	}
	return max(n, 1)
}
