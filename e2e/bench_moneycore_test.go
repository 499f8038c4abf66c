package e2e

// Issue 13's money-core benchmark: one run that drives the replicator as a
// user does (a configuration file and the cdc binary, `cdc run`, `cdc tail`
// and `cdc sink` as child processes) over a deterministic money-core
// workload, and measures in the same run, on the same machine and the same
// data, the ceilings each stage is compared with (pkg/benchkit). `make
// bench-e2e` runs it; docs/benchmark.md explains every number.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/benchkit"
	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

// mcKnobs are one run's sizes and where it writes.
type mcKnobs struct {
	benchkit.Knobs
	Sellers int
	// Out is the directory of moneycore.json, moneycore.txt and
	// moneycore.png.
	Out string
	// PhaseTimeout bounds each drain.
	PhaseTimeout time.Duration
	// ProfileSeconds > 0 (CDC_BENCH_PROFILE) serves pprof from every cdc
	// process and takes a CPU profile of that many seconds from the start
	// of each drain, with an allocation profile at its end, into Out
	// (profile-<phase>.{cpu,allocs}.pprof). Profiling costs CPU: the
	// rates of such a run are not the benchmark's.
	ProfileSeconds int
}

// mcFullKnobs are the full run's sizes (issue 13): a 1,000,000-event
// backlog drained by `cdc run`, a 100,000-event stage backlog (the same
// workload's first events) drained by every stage and ceiling, 2,000
// events/s for a minute, four raw appliers.
var mcFullKnobs = mcKnobs{
	Knobs: benchkit.Knobs{Seed: 1, BacklogEvents: 1_000_000, StageEvents: 100_000, LagRate: 2000, LagSeconds: 60,
		RawAppliers: 4, SampleIntervalS: 0.25},
	Sellers:      200,
	Out:          filepath.Join("..", "bench-out"),
	PhaseTimeout: 15 * time.Minute,
}

// mcKnobsFromEnv overrides k with the CDC_BENCH_* variables
// (docs/benchmark.md, "Knobs").
func mcKnobsFromEnv(tb testing.TB, k mcKnobs) mcKnobs {
	tb.Helper()
	num := func(name string, dst *int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
			if err != nil || n <= 0 {
				tb.Fatalf("%s=%q: want a positive integer", name, v)
			}
			*dst = n
		}
	}
	num("CDC_BENCH_BACKLOG", &k.BacklogEvents)
	num("CDC_BENCH_STAGE_EVENTS", &k.StageEvents)
	num("CDC_BENCH_LAG_RATE", &k.LagRate)
	num("CDC_BENCH_RAW_APPLIERS", &k.RawAppliers)
	num("CDC_BENCH_SELLERS", &k.Sellers)
	num("CDC_BENCH_PROFILE", &k.ProfileSeconds)
	seed := int(k.Seed)
	num("CDC_BENCH_SEED", &seed)
	k.Seed = uint64(seed)
	if v := os.Getenv("CDC_BENCH_LAG_SECONDS"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 {
			tb.Fatalf("CDC_BENCH_LAG_SECONDS=%q: want a positive number", v)
		}
		k.LagSeconds = s
	}
	ms := int(k.SampleIntervalS * 1000)
	num("CDC_BENCH_SAMPLE_MS", &ms)
	k.SampleIntervalS = float64(ms) / 1000
	if v := os.Getenv("CDC_BENCH_OUT"); v != "" {
		k.Out = v
	}
	k.StageEvents = min(k.StageEvents, k.BacklogEvents)
	if k.StageEvents <= 10*k.Sellers {
		tb.Fatalf("stage events %d must exceed ten times the %d sellers of the prologue", k.StageEvents, k.Sellers)
	}
	return k
}

// BenchmarkMoneyCore is issue 13's benchmark (make bench-e2e): the whole
// pipeline (MongoDB test server -> cdc tail -> JetStream, file store ->
// cdc sink -> Postgres, fsync on) over the money-core workload, its
// ceilings, lag at a fixed rate, memory and CPU per stage. Run it with
// -benchtime 1x: each iteration is the whole run (about 8 minutes at the
// full size on 2 cores). It prints the table and writes
// bench-out/moneycore.{json,txt,png}.
func BenchmarkMoneyCore(b *testing.B) {
	k := mcKnobsFromEnv(b, mcFullKnobs)
	for i := 0; i < b.N; i++ {
		r := runMoneyCore(b, k)
		fmt.Print(r.Table())
		b.ReportMetric(r.EndToEnd.SustainedRate, "e2e-events/s")
		b.ReportMetric(r.Ratios.EndToEnd, "e2e/ceiling")
		b.ReportMetric(r.Ratios.Apply, "apply/copy")
		b.ReportMetric(r.Ratios.Publish, "publish/raw")
		b.ReportMetric(r.Lag.P99Ms, "lag-p99-ms")
		b.ReportMetric(r.Backlog.Rate, "backlog-events/s")
		b.ReportMetric(r.Backlog.RSS.PeakMB, "backlog-peak-rss-MB")
	}
}

// mc is one run's state.
type mc struct {
	tb      testing.TB
	k       mcKnobs
	e       *env
	set     *transform.Set
	r       *benchkit.Report
	natsBin string
	pgRoot  int // the Postgres postmaster
	prolog  int
	// The whole backlog and the stage backlog (its workload's first
	// Knobs.StageEvents events, in a database of their own).
	full, stage mcBacklog
	// pprof is the pprof address of the process last configured
	// (ProfileSeconds), "" when not profiling.
	pprof string
}

// mcBacklog is one MongoDB database holding a backlog, on a Mongo test
// server of its own.
type mcBacklog struct {
	e       *env   // its server, client and database
	startAt string // the cluster time before it: tailer.start_at
	events  int
	live    map[string]int // documents per collection at the end
}

func runMoneyCore(tb testing.TB, k mcKnobs) *benchkit.Report {
	tb.Helper()
	set, err := transform.Load(transforms.Builtin, ".")
	if err != nil {
		tb.Fatalf("built-in transforms: %v", err)
	}
	m := &mc{tb: tb, k: k, set: set, r: &benchkit.Report{Schema: benchkit.ReportSchema, StartedAt: time.Now().UTC(), Knobs: k.Knobs}}
	m.e = newBenchEnv(tb, set.Collections())
	m.natsBin = mcNATSServerBinary(tb)
	m.pgRoot = m.postmaster()
	m.machine()

	m.backlogs()
	js, natsA := m.publishPhase()
	m.applyPhase(natsA)
	data := m.capture(js, natsA)
	natsA.stop()
	m.ceilings(data)
	m.endToEnd(false)
	m.endToEnd(true)
	m.backlogDrain()
	m.lagPhase()

	m.r.WallSeconds = time.Since(m.r.StartedAt).Seconds()
	m.r.ComputeRatios()
	m.r.ComputeTargets()
	m.output()
	return m.r
}

// newBenchEnv is newBaseEnv's Postgres side (the database of the harness's
// own queries) and a Mongo test server for the whole backlog (mongoEnv).
func newBenchEnv(tb testing.TB, collections []string) *env {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	tb.Cleanup(cancel)
	base := &env{t: tb, ctx: ctx, log: zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel)), dir: tb.TempDir()}
	e := mongoEnv(base, fmt.Sprintf("cdc_mcbench_%d", time.Now().UnixNano()%1e9), collections)
	e.pgURL = pgtest.NewDatabase(tb)
	if _, err := migrate.Up(ctx, e.pgURL, nil); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(ctx, e.pgURL)
	if err != nil {
		tb.Fatalf("pg pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	e.pool = pool
	return e
}

// machine records where the run happens.
func (m *mc) machine() {
	mi := &m.r.Machine
	mi.CPUs, mi.GoVersion, mi.OS, mi.Arch = runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		mi.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		mi.Load1AtStart, _ = strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	}
	mi.ChildGOMEMLIMIT = os.Getenv("GOMEMLIMIT")
	must(m.tb, m.e.pool.QueryRow(m.e.ctx, `SELECT current_setting('server_version'), current_setting('fsync')`).Scan(&mi.PostgresVersion, &mi.PostgresFsync))
}

// postmaster is the pid of the Postgres server process (the parent of
// every backend).
func (m *mc) postmaster() int {
	var backend int
	must(m.tb, m.e.pool.QueryRow(m.e.ctx, `SELECT pg_backend_pid()`).Scan(&backend))
	pid, err := benchkit.ParentPID(backend)
	must(m.tb, err)
	return pid
}

// mongoEnv is base (its Postgres and scratch directory) with a Mongo test
// server of its own and database db, its collections created. Each
// backlog gets its own server: the emulator answers a find on
// local.oplog.rs by a scan of its whole oplog (the tailer's oplog
// headroom monitor runs one a minute), which on a million-entry oplog
// stalls every client for seconds, so a phase must not share the whole
// backlog's. The oplog is unbounded: the backlog's million events, their
// post-images included, outgrow the default 1 GiB, and a tailer can only
// drain a backlog the oplog still holds (a real replica set would need an
// oplog that large too). CDC_TEST_MONGO_URI points every backlog at one
// real replica set instead, as in the other tests.
func mongoEnv(base *env, db string, collections []string) *env {
	tb := base.t
	tb.Helper()
	e := *base
	e.dbName = db
	if uri := os.Getenv("CDC_TEST_MONGO_URI"); uri != "" {
		e.srv, e.uri = nil, uri
	} else {
		srv, err := mongotest.New(mongotest.Options{MaxOplogBytes: -1})
		if err != nil {
			tb.Fatalf("mongotest: %v", err)
		}
		tb.Cleanup(func() { _ = srv.Close() })
		e.srv, e.uri = srv, srv.URI()
	}
	client, err := mongo.Connect(options.Client().ApplyURI(e.uri))
	if err != nil {
		tb.Fatalf("mongo connect %s: %v", e.uri, err)
	}
	if err := client.Ping(e.ctx, nil); err != nil {
		tb.Fatalf("mongo unreachable at %s: %v", e.uri, err)
	}
	e.client = client
	tb.Cleanup(func() {
		_ = client.Database(db).Drop(context.Background())
		_ = client.Disconnect(context.Background())
	})
	e.createCollections(collections...)
	return &e
}

// write writes the first events of the seeded workload into de's
// database and returns the backlog and the generator's stats.
func (m *mc) write(de *env, events int) (mcBacklog, benchkit.Stats, benchkit.WriterStats, time.Duration) {
	b := mcBacklog{e: de, startAt: de.startAt()}
	gen := benchkit.NewWorkload(benchkit.WorkloadOptions{Seed: m.k.Seed, Sellers: m.k.Sellers})
	w, err := benchkit.NewWriter(m.e.ctx, de.client.Database(de.dbName), 1000)
	must(m.tb, err)
	defer w.Close(m.e.ctx)
	t0 := time.Now()
	n, err := benchkit.WriteBacklog(m.e.ctx, gen, w, events)
	if err != nil {
		m.tb.Fatalf("writing the backlog into %s: %v", de.dbName, err)
	}
	took := time.Since(t0)
	st := gen.Stats()
	b.events, b.live = n, st.Live
	m.prolog = gen.PrologueEvents()
	m.tb.Logf("backlog %s: %d events (%d transactions) written in %.1fs", de.dbName, n, st.Transactions, took.Seconds())
	return b, st, w.Stats, took
}

// backlogs writes the whole backlog and the stage backlog, each on its
// own server.
func (m *mc) backlogs() {
	var st benchkit.Stats
	var took time.Duration
	wr := &m.r.Workload
	m.full, st, wr.Writer, took = m.write(m.e, m.k.BacklogEvents)
	wr.Stats, wr.Sellers, wr.MongoWriteSeconds = st, m.k.Sellers, took.Seconds()
	wr.AvgDocBytes = map[string]float64{}
	for _, c := range benchkit.Collections {
		wr.AvgDocBytes[c] = st.AvgDocBytes(c)
	}
	m.stage, _, _, took = m.write(mongoEnv(m.e, m.e.dbName+"_stage", m.set.Collections()), m.k.StageEvents)
	wr.StageEvents, wr.StageWriteSeconds = m.stage.events, took.Seconds()
}

// config is a user's configuration for this run: the harness's
// connections, the backlog's database, and every tuning knob at its
// default.
func (m *mc) config(b mcBacklog, natsURL, dataDir, pgURL string) config.Config {
	cfg := b.e.config(natsURL, dataDir)
	def := config.Default()
	cfg.Tailer, cfg.Sink = def.Tailer, def.Sink
	cfg.Tailer.StartAt = b.startAt
	cfg.Postgres.URL = pgURL
	cfg.Transforms.Dir = ""
	if m.k.ProfileSeconds > 0 {
		m.pprof = fmt.Sprintf("127.0.0.1:%d", freePort(m.tb))
		cfg.HTTP.Addr, cfg.HTTP.Pprof = m.pprof, true
	}
	return cfg
}

// target is a fresh, migrated Postgres database.
func (m *mc) target() (string, *pgxpool.Pool) {
	url := pgtest.NewDatabase(m.tb)
	if _, err := migrate.Up(m.e.ctx, url, nil); err != nil {
		m.tb.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(m.e.ctx, url)
	must(m.tb, err)
	m.tb.Cleanup(pool.Close)
	return url, pool
}

// release drops a finished phase's database and checkpoints, so that the
// next phase pays neither for its autovacuum nor for writing its dirty
// buffers (pgtest's own cleanup then finds it gone).
func (m *mc) release(url string, pool *pgxpool.Pool) {
	m.tb.Helper()
	pool.Close()
	u, err := neturl.Parse(url)
	must(m.tb, err)
	conn, err := pgx.Connect(m.e.ctx, pgtestShared().AdminURL())
	must(m.tb, err)
	defer conn.Close(m.e.ctx)
	_, err = conn.Exec(m.e.ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()+" WITH (FORCE)")
	must(m.tb, err)
	_, err = conn.Exec(m.e.ctx, "CHECKPOINT")
	must(m.tb, err)
}

func (m *mc) interval() time.Duration {
	return time.Duration(m.k.SampleIntervalS * float64(time.Second))
}

// applied counts the events the sink committed (every lane's position).
func applied(pool *pgxpool.Pool) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		var n int64
		err := pool.QueryRow(ctx, `SELECT coalesce(sum(stream_seq), 0)::bigint FROM cdc.sink_positions`).Scan(&n)
		return n, err
	}
}

// streamNames are cfg's change-event streams (one per sink lane).
func streamNames(cfg *config.Config) []string {
	sc := bus.StreamsFromConfig(cfg)
	var out []string
	for _, l := range sc.LaneNames() {
		out = append(out, sc.LaneStream(l))
	}
	return out
}

// published counts the messages in cfg's streams.
func published(js jetstream.JetStream, cfg *config.Config) func(context.Context) (int64, error) {
	names := streamNames(cfg)
	return func(ctx context.Context) (int64, error) {
		var n int64
		for _, name := range names {
			st, err := js.Stream(ctx, name)
			if err != nil {
				return 0, err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return 0, err
			}
			n += int64(info.State.Msgs)
		}
		return n, nil
	}
}

// waitCount waits until the sampler's counter reaches want, failing if
// p (nil: none) exits first or the phase timeout passes (naming the dead
// letters of pool, nil: none).
func (m *mc) waitCount(what string, s *benchkit.Sampler, want int64, p *process, pool *pgxpool.Pool) {
	m.tb.Helper()
	deadline := time.Now().Add(m.k.PhaseTimeout)
	for {
		last, err := s.Latest()
		if last.Count >= want {
			return
		}
		out := ""
		if p != nil {
			select {
			case <-p.done:
				m.tb.Fatalf("%s: cdc exited %d at %d of %d events:\n%s", what, p.cmd.ProcessState.ExitCode(), last.Count, want, p.tail())
			default:
			}
			out = p.tail()
		}
		if time.Now().After(deadline) {
			dl := ""
			if pool != nil {
				pe := *m.e
				pe.pool = pool
				dl = pe.mcDeadLetterSummary()
			}
			m.tb.Fatalf("%s: %d of %d events within %s (last counter error: %v)%s\n%s", what, last.Count, want, m.k.PhaseTimeout, err, dl, out)
		}
		time.Sleep(m.interval() / 2)
	}
}

// drain runs one process's drain: it starts sampling, waits for want,
// reads the process's VmHWM and CPU, stops it and summarizes.
func (m *mc) drain(what string, p *process, pool *pgxpool.Pool, count func(context.Context) (int64, error), cpu *benchkit.CPUMeter, want int) benchkit.Drain {
	m.tb.Helper()
	s := benchkit.StartSampler(m.e.ctx, m.interval(), p.cmd.Process.Pid, count, cpu)
	profiled := m.profile(what)
	m.waitCount(what, s, int64(want), p, pool)
	<-profiled
	_, hwm, err := benchkit.ReadMemory(p.cmd.Process.Pid)
	must(m.tb, err)
	samples := s.Stop(m.e.ctx)
	if code := p.terminate(); code != 0 {
		m.tb.Fatalf("%s: cdc exited %d after a clean stop:\n%s", what, code, p.tail())
	}
	d := benchkit.DrainOf(samples, want, hwm)
	d.CPU = cpu.Result(want)
	tput := benchkit.ThroughputSeries(what, samples, time.Second)
	if pool == nil { // publishes, applies nothing
		tput.Kind = "publish"
	}
	m.r.Series = append(m.r.Series, tput, benchkit.RSSSeries(what, samples))
	m.tb.Logf("%s: %d events in %.1fs, %.0f events/s (sustained %.0f), peak RSS %.0f MB", what, want, d.Seconds, d.Rate, d.SustainedRate, d.RSS.PeakMB)
	return d
}

// profile takes the CPU profile, then the allocation profile, of the
// process last configured (ProfileSeconds) into Out; the channel closes
// when both are written, at once when not profiling. A failed profile is
// logged: it is a diagnosis, not the benchmark.
func (m *mc) profile(what string) <-chan struct{} {
	done := make(chan struct{})
	if m.pprof == "" {
		close(done)
		return done
	}
	addr, slug := m.pprof, strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(what))
	get := func(path, file string) {
		// The process serves its endpoint soon after it starts.
		var resp *http.Response
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			resp, err = http.Get("http://" + addr + path)
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			m.tb.Logf("profile %s: %v", file, err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(m.k.Out, file), b, 0o644)
		}
		if err != nil {
			m.tb.Logf("profile %s: %v", file, err)
		}
	}
	go func() {
		defer close(done)
		must(m.tb, os.MkdirAll(m.k.Out, 0o755))
		get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", m.k.ProfileSeconds), "profile-"+slug+".cpu.pprof")
		get("/debug/pprof/allocs", "profile-"+slug+".allocs.pprof")
	}()
	return done
}

func (m *mc) meter(procs map[string]int, pgTree bool) *benchkit.CPUMeter {
	cpu := benchkit.NewCPUMeter()
	names := make([]string, 0, len(procs))
	for n := range procs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		must(m.tb, cpu.Process(n, procs[n]))
	}
	if pgTree {
		must(m.tb, cpu.Tree("postgres", m.pgRoot))
	}
	return cpu
}

// mcHarness is the test process: the Mongo test server (and, in the lag
// phase, the load generator; in the ceilings, the raw writers).
const mcHarness = "harness+mongo"

// publishPhase: `cdc tail` alone publishes the stage backlog into an
// external nats-server.
func (m *mc) publishPhase() (jetstream.JetStream, *mcNATS) {
	n := m.startNATS("nats-a")
	cfg := m.config(m.stage, n.url, filepath.Join(m.e.dir, "tail-data"), m.e.pgURL)
	js := n.js(cfg.Tailer.MaxInFlight)
	p := m.e.startCommand("tail", m.e.writeConfig(cfg))
	cpu := m.meter(map[string]int{"cdc tail": p.cmd.Process.Pid, "nats-server": n.pid(), mcHarness: os.Getpid()}, false)
	d := m.drain("cdc tail", p, nil, published(js, &cfg), cpu, m.stage.events)
	got, err := published(js, &cfg)(m.e.ctx)
	must(m.tb, err)
	if got != int64(m.stage.events) {
		m.tb.Fatalf("the tailer published %d messages for %d events", got, m.stage.events)
	}
	m.r.Publish = d
	return js, n
}

// applyPhase: `cdc sink` alone applies the published stream into a fresh
// database.
func (m *mc) applyPhase(n *mcNATS) {
	url, pool := m.target()
	cfg := m.config(m.stage, n.url, filepath.Join(m.e.dir, "sink-data"), url)
	p := m.e.startCommand("sink", m.e.writeConfig(cfg))
	cpu := m.meter(map[string]int{"cdc sink": p.cmd.Process.Pid, "nats-server": n.pid()}, true)
	d := m.drain("cdc sink", p, pool, applied(pool), cpu, m.stage.events)
	d.DeadLetters = m.verify("cdc sink", pool, m.stage)
	m.release(url, pool)
	m.r.Apply = d
}

// deadLetters fails on any dead letter (a benchmark of a replication that
// lost data measures nothing) and returns their count, 0.
func (m *mc) deadLetters(what string, pool *pgxpool.Pool) int {
	m.tb.Helper()
	var dl int
	must(m.tb, pool.QueryRow(m.e.ctx, `SELECT count(*) FROM cdc.dead_letters`).Scan(&dl))
	if dl != 0 {
		pe := *m.e
		pe.pool = pool
		m.tb.Fatalf("%s: %d dead letters%s", what, dl, pe.mcDeadLetterSummary())
	}
	return dl
}

// verify checks that the four tables hold the backlog's live documents,
// and that nothing was dead-lettered.
func (m *mc) verify(what string, pool *pgxpool.Pool, b mcBacklog) int {
	m.tb.Helper()
	dl := m.deadLetters(what, pool)
	tables := map[string]string{benchkit.CollUsers: "users", benchkit.CollPurchaseRequests: "purchase_requests",
		benchkit.CollPayments: "payments", benchkit.CollFundsLedger: "funds_ledger_entries"}
	for _, c := range benchkit.Collections {
		var got int
		must(m.tb, pool.QueryRow(m.e.ctx, `SELECT count(*) FROM `+tables[c]).Scan(&got))
		if got != b.live[c] {
			m.tb.Fatalf("%s: %s holds %d rows, the workload left %d documents in %s", what, tables[c], got, b.live[c], c)
		}
	}
	return dl
}

// capture reads the tailer's stream of the stage backlog and maps it.
func (m *mc) capture(js jetstream.JetStream, n *mcNATS) *benchkit.RawData {
	cfg := m.config(m.stage, n.url, "", "")
	msgs, err := benchkit.Capture(m.e.ctx, js, streamNames(&cfg), 0)
	if err != nil {
		m.tb.Fatalf("capture: %v", err)
	}
	data, err := benchkit.PrepareRaw(m.set, msgs, m.k.RawAppliers, m.prolog)
	if err != nil {
		m.tb.Fatalf("prepare the raw rows: %v", err)
	}
	m.r.Workload.AvgPayloadBytes = map[string]float64{}
	for c, b := range data.PayloadBytes {
		m.r.Workload.AvgPayloadBytes[c] = float64(b) / float64(data.Messages[c])
	}
	return data
}

// ceilings measures the raw writers on the stage backlog's stream: async
// publish and the partitioned JetStream -> Postgres pipeline on a fresh
// nats-server, COPY on one connection.
func (m *mc) ceilings(data *benchkit.RawData) {
	c := &m.r.Ceilings
	c.Events, c.Partitions = len(data.Events), data.Partitions
	n := m.startNATS("nats-raw")
	def := config.Default()
	js := n.js(def.Tailer.MaxInFlight)

	cpu := m.meter(map[string]int{"nats-server": n.pid(), mcHarness: os.Getpid()}, false)
	pub, err := benchkit.RawPublish(m.e.ctx, js, data, def.NATS.DedupWindow)
	if err != nil {
		m.tb.Fatalf("raw publish: %v", err)
	}
	cpu.Sample()
	c.RawPublish = mcCeiling(pub, cpu)

	url, pool := m.target()
	cpu = m.meter(map[string]int{"nats-server": n.pid(), mcHarness: os.Getpid()}, true)
	pipe, err := benchkit.RawPipeline(m.e.ctx, js, url, data)
	if err != nil {
		m.tb.Fatalf("raw pipeline: %v", err)
	}
	cpu.Sample()
	c.RawPipeline = mcCeiling(pipe, cpu)
	m.verifyRaw("raw pipeline", pool, data)
	m.release(url, pool)
	n.stop()

	url, pool = m.target()
	cpu = m.meter(map[string]int{mcHarness: os.Getpid()}, true)
	cp, err := benchkit.RawCopy(m.e.ctx, url, data)
	if err != nil {
		m.tb.Fatalf("raw copy: %v", err)
	}
	cpu.Sample()
	c.RawCopy = mcCeiling(cp, cpu)
	m.verifyRaw("raw copy", pool, data)
	m.release(url, pool)
	m.tb.Logf("ceilings over %d events: raw publish %.0f/s, raw pipeline x%d %.0f/s, raw COPY %.0f/s",
		c.Events, c.RawPublish.Rate, c.Partitions, c.RawPipeline.Rate, c.RawCopy.Rate)
}

func mcCeiling(ms benchkit.Measure, cpu *benchkit.CPUMeter) benchkit.Ceiling {
	return benchkit.Ceiling{Events: ms.Events, Seconds: ms.Elapsed.Seconds(), Rate: ms.Rate(), CPU: cpu.Result(ms.Events)}
}

// verifyRaw checks that a raw writer left each table with the rows of the
// documents live at the end of the captured stream.
func (m *mc) verifyRaw(what string, pool *pgxpool.Pool, data *benchkit.RawData) {
	m.tb.Helper()
	for i, t := range data.Tables {
		var got int
		must(m.tb, pool.QueryRow(m.e.ctx, `SELECT count(*) FROM `+t.Name).Scan(&got))
		if got != data.Live[i] {
			m.tb.Fatalf("%s: %s holds %d rows, want %d", what, t.Name, got, data.Live[i])
		}
	}
}

// endToEnd: `cdc run` drains the stage backlog into a fresh database,
// with the embedded NATS server or a separate nats-server (external).
func (m *mc) endToEnd(external bool) {
	url, pool := m.target()
	what, natsURL, procs := "cdc run (embedded NATS)", "", map[string]int{mcHarness: os.Getpid()}
	if external {
		n := m.startNATS("nats-run")
		defer n.stop()
		what, natsURL = "cdc run (external NATS)", n.url
		procs["nats-server"] = n.pid()
	}
	cfg := m.config(m.stage, natsURL, filepath.Join(m.e.dir, fmt.Sprintf("run-data-%v", external)), url)
	p := m.e.startCommand("run", m.e.writeConfig(cfg))
	procs["cdc run"] = p.cmd.Process.Pid
	d := m.drain(what, p, pool, applied(pool), m.meter(procs, true), m.stage.events)
	d.DeadLetters = m.verify(what, pool, m.stage)
	m.release(url, pool)
	if external {
		m.r.EndToEndExternal = d
	} else {
		m.r.EndToEnd = d
	}
}

// backlogDrain: `cdc run` with the embedded NATS server drains the whole
// backlog into a fresh database.
func (m *mc) backlogDrain() {
	url, pool := m.target()
	cfg := m.config(m.full, "", filepath.Join(m.e.dir, "backlog-data"), url)
	p := m.e.startCommand("run", m.e.writeConfig(cfg))
	what := fmt.Sprintf("cdc run, %s-event backlog", humanize.Comma(int64(m.full.events)))
	cpu := m.meter(map[string]int{"cdc run": p.cmd.Process.Pid, mcHarness: os.Getpid()}, true)
	d := m.drain(what, p, pool, applied(pool), cpu, m.full.events)
	d.DeadLetters = m.verify(what, pool, m.full)
	m.release(url, pool)
	m.r.Backlog = d
}

// mcLagSQL records, for every row write of the four tables, the document's
// write stamp (updated_at, or created_at for the ledger, which has no
// other) and the Postgres clock at the write.
const mcLagSQL = `
CREATE TABLE bench_lag (tbl text NOT NULL, stamp timestamptz NOT NULL, seen timestamptz NOT NULL);
CREATE FUNCTION bench_lag_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO bench_lag VALUES (TG_TABLE_NAME, NEW.updated_at, clock_timestamp()); RETURN NULL; END $$;
CREATE FUNCTION bench_lag_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO bench_lag VALUES (TG_TABLE_NAME, NEW.created_at, clock_timestamp()); RETURN NULL; END $$;
CREATE TRIGGER bench_lag AFTER INSERT OR UPDATE ON users FOR EACH ROW EXECUTE FUNCTION bench_lag_updated();
CREATE TRIGGER bench_lag AFTER INSERT OR UPDATE ON purchase_requests FOR EACH ROW EXECUTE FUNCTION bench_lag_updated();
CREATE TRIGGER bench_lag AFTER INSERT OR UPDATE ON payments FOR EACH ROW EXECUTE FUNCTION bench_lag_updated();
CREATE TRIGGER bench_lag AFTER INSERT ON funds_ledger_entries FOR EACH ROW EXECUTE FUNCTION bench_lag_created();
`

// lagPhase: `cdc run` (embedded NATS) replicates a fresh database while
// the workload is written at the offered rate; lag is the Postgres row
// write minus the document's write stamp. The sellers are written and
// applied first, outside the measured window (start-up is not lag).
func (m *mc) lagPhase() {
	le := mongoEnv(m.e, m.e.dbName+"_lag", m.set.Collections())
	url, pool := m.target()
	_, err := pool.Exec(m.e.ctx, mcLagSQL)
	must(m.tb, err)
	le.pgURL, le.pool = url, pool
	cfg := m.config(mcBacklog{e: le, startAt: le.startAt()}, "", filepath.Join(m.e.dir, "lag-data"), url)
	p := m.e.startCommand("run", m.e.writeConfig(cfg))
	gen := benchkit.NewWorkload(benchkit.WorkloadOptions{Seed: m.k.Seed + 1, Sellers: m.k.Sellers, Clock: time.Now})
	w, err := benchkit.NewWriter(m.e.ctx, le.client.Database(le.dbName), 1000)
	must(m.tb, err)
	defer w.Close(m.e.ctx)
	cpu := m.meter(map[string]int{"cdc run": p.cmd.Process.Pid, mcHarness: os.Getpid()}, true)
	s := benchkit.StartSampler(m.e.ctx, m.interval(), p.cmd.Process.Pid, applied(pool), cpu)
	warm, err := benchkit.WriteBacklog(m.e.ctx, gen, w, gen.PrologueEvents())
	must(m.tb, err)
	m.waitCount("lag phase warm-up", s, int64(warm), p, pool)

	paceStart := time.Now()
	res, err := benchkit.Pace(m.e.ctx, gen, w, m.k.LagRate, time.Duration(m.k.LagSeconds*float64(time.Second)))
	if err != nil {
		m.tb.Fatalf("lag phase: writing at %d events/s: %v", m.k.LagRate, err)
	}
	m.waitCount("lag phase", s, int64(warm+res.Events), p, pool)
	_, hwm, err := benchkit.ReadMemory(p.cmd.Process.Pid)
	must(m.tb, err)
	samples := s.Stop(m.e.ctx)
	if code := p.terminate(); code != 0 {
		m.tb.Fatalf("lag phase: cdc exited %d after a clean stop:\n%s", code, p.tail())
	}
	dl := m.deadLetters("lag phase", pool)
	rows, err := pool.Query(m.e.ctx, `SELECT extract(epoch FROM seen - stamp) * 1000, extract(epoch FROM seen - $1::timestamptz)
		FROM bench_lag WHERE stamp >= $1::timestamptz`, paceStart.Truncate(time.Millisecond))
	must(m.tb, err)
	var lags []benchkit.LagPoint
	for rows.Next() {
		var lp benchkit.LagPoint
		must(m.tb, rows.Scan(&lp.Ms, &lp.T))
		lags = append(lags, lp)
	}
	must(m.tb, rows.Err())
	rows.Close()
	m.release(url, pool)
	if len(lags) == 0 {
		m.tb.Fatal("lag phase: no row write was stamped inside the paced window")
	}
	l := benchkit.LagOf(lags)
	l.OfferedRate, l.Events, l.GeneratorMaxLateMs = m.k.LagRate, res.Events, float64(res.MaxLate)/float64(time.Millisecond)
	l.Seconds = res.Elapsed.Seconds()
	l.AchievedRate = float64(res.Events) / l.Seconds
	l.RSS = benchkit.DrainOf(samples, warm+res.Events, hwm).RSS
	l.DeadLetters = dl
	l.CPU = cpu.Result(warm + res.Events)
	m.r.Lag = l
	m.r.Series = append(m.r.Series, benchkit.LagSeries(lags)...)
	m.r.Series = append(m.r.Series, benchkit.ThroughputSeries("cdc run (lag phase)", samples, time.Second),
		benchkit.RSSSeries("cdc run (lag phase)", samples))
	m.tb.Logf("lag at %d events/s (%.0f achieved) for %.0fs: p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms",
		l.OfferedRate, l.AchievedRate, l.Seconds, l.P50Ms, l.P95Ms, l.P99Ms, l.MaxMs)
}

// output writes moneycore.json, .txt and .png into the output directory.
func (m *mc) output() {
	must(m.tb, os.MkdirAll(m.k.Out, 0o755))
	must(m.tb, m.r.WriteJSON(filepath.Join(m.k.Out, "moneycore.json")))
	must(m.tb, os.WriteFile(filepath.Join(m.k.Out, "moneycore.txt"), []byte(m.r.Table()), 0o644))
	must(m.tb, benchkit.Plot(m.r, filepath.Join(m.k.Out, "moneycore.png")))
}

// mcNATS is a nats-server process (JetStream, file store): the external
// NATS of the phases that separate it from the replicator.
type mcNATS struct {
	tb   testing.TB
	cmd  *exec.Cmd
	url  string
	out  *lockedBuffer
	done chan struct{}
	once sync.Once
	conn *nats.Conn
}

var (
	mcNATSOnce sync.Once
	mcNATSPath string
	mcNATSErr  error
)

// mcNATSServerBinary builds the real nats-server at the version go.mod
// requires (its packages are already compiled for the cdc binary, so this
// is mostly a link), next to the test's cdc binary.
func mcNATSServerBinary(tb testing.TB) string {
	tb.Helper()
	mcNATSOnce.Do(func() {
		mcNATSPath = filepath.Join(filepath.Dir(cdcBinary), "nats-server")
		out, err := exec.Command("go", "build", "-o", mcNATSPath, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			mcNATSErr = fmt.Errorf("building nats-server: %w\n%s", err, out)
		}
	})
	if mcNATSErr != nil {
		tb.Fatal(mcNATSErr)
	}
	return mcNATSPath
}

func (m *mc) startNATS(name string) *mcNATS {
	m.tb.Helper()
	port := freePort(m.tb)
	cmd := exec.Command(m.natsBin, "-js", "-sd", filepath.Join(m.e.dir, name), "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-n", name)
	buf := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	must(m.tb, cmd.Start())
	n := &mcNATS{tb: m.tb, cmd: cmd, url: fmt.Sprintf("nats://127.0.0.1:%d", port), out: buf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(n.done) }()
	m.tb.Cleanup(n.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := nats.Connect(n.url)
		if err == nil {
			n.conn = nc
			return n
		}
		select {
		case <-n.done:
			m.tb.Fatalf("nats-server %s exited: %s", name, buf.String())
		default:
		}
		if time.Now().After(deadline) {
			m.tb.Fatalf("nats-server %s not reachable within 30s: %v\n%s", name, err, buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *mcNATS) pid() int { return n.cmd.Process.Pid }

// js is a JetStream client of the server with maxPending async publishes
// in flight at most.
func (n *mcNATS) js(maxPending int) jetstream.JetStream {
	js, err := jetstream.New(n.conn, jetstream.WithPublishAsyncMaxPending(maxPending))
	must(n.tb, err)
	return js
}

// stop ends the server (SIGTERM, then SIGKILL after 30 s).
func (n *mcNATS) stop() {
	n.once.Do(func() {
		if n.conn != nil {
			n.conn.Close()
		}
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(30 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	})
}
