package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/state"
)

// TestTwoRunInstances: two `cdc run` processes (sink.instance run-a and
// run-b) on one NATS server, one Postgres database and one Mongo. Under a
// load of inserts, updates, replacements, deletes and multi-document
// transactions, a random one of the two is killed -9 several times and
// restarted. The survivor takes the consumer within seconds; at the end
// Postgres equals Mongo exactly, the audit trigger shows no event applied
// twice, and the stand-by's log names the instance holding the fence.
func TestTwoRunInstances(t *testing.T) {
	start := time.Now()
	e := newEnv(t)
	n := e.startNATS() // one server in the test process: both instances share it
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>7))

	names := [2]string{"run-a", "run-b"}
	startAt := e.startAt()
	var cfgPaths [2]string
	for i, name := range names {
		cfg := e.config(n.url(), filepath.Join(e.dir, "data-"+name))
		cfg.Tailer.StartAt = startAt
		cfg.Sink.Instance = name
		cfg.Tailer.Instance = name
		// Short, so a killed tailer's checkpoint is taken over within the
		// waits below (production default 15s).
		cfg.Tailer.StandbyTakeover = 2 * time.Second
		cfg.Log.Level = "info" // the fence's "took" and "standing by" lines
		cfg.Log.Format = "json"
		cfg.HTTP.Addr = ""
		cfgPaths[i] = e.writeConfig(cfg)
	}

	// Every process ever started, per instance, for the log assertions.
	var all [2][]*process
	var cur [2]*process
	launch := func(i int) {
		p := e.startProcess(cfgPaths[i])
		cur[i] = p
		all[i] = append(all[i], p)
	}
	dump := func() string {
		var b strings.Builder
		for i := range names {
			for k, p := range all[i] {
				fmt.Fprintf(&b, "--- %s #%d ---\n%s\n", names[i], k, p.tail())
			}
		}
		return b.String()
	}
	// alive fails the test when a process we did not kill has exited.
	alive := func() {
		t.Helper()
		for i, p := range cur {
			if p == nil {
				continue
			}
			select {
			case <-p.done:
				t.Fatalf("%s exited on its own (code %d):\n%s", names[i], p.cmd.ProcessState.ExitCode(), dump())
			default:
			}
		}
	}
	pos := func() state.Position {
		t.Helper()
		p, _, err := state.ReadPosition(e.ctx, e.pool, "cdc-sink")
		must(t, err)
		return p
	}
	// waitFor polls cond until it holds; it fails after d, or as soon as a
	// process exits on its own.
	waitFor := func(what string, d time.Duration, cond func() bool) time.Duration {
		t.Helper()
		t0 := time.Now()
		for !cond() {
			alive()
			if time.Since(t0) > d {
				p := pos()
				t.Fatalf("%s: not within %s (position owner=%q epoch=%d seq=%d)\n%s", what, d, p.Owner, p.Epoch, p.Seq, dump())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(t0)
	}
	// saysRole: the process has logged that it took the consumer or that
	// it stands by.
	saysRole := func(p *process) bool {
		for _, l := range logLines(p.out.String()) {
			if strings.HasPrefix(l.msg, "took the consumer") || strings.HasPrefix(l.msg, "standing by") {
				return true
			}
		}
		return false
	}

	// run-a first, so the start is deterministic: it takes the consumer,
	// then run-b comes up and stands by.
	launch(0)
	waitFor("run-a takes the consumer", 30*time.Second, func() bool { return pos().Owner == names[0] })
	firstEpoch := pos().Epoch
	holderKills := 0
	launch(1)
	waitFor("run-b says its role", 30*time.Second, func() bool { return saysRole(cur[1]) })

	// The load: the harness's mixed single-document writes, and every so
	// often a multi-document transaction.
	stopLoad := startMixedLoad(e, seed)
	defer stopLoad()
	loadStart := time.Now()

	const kills = 4
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(1200+rng.IntN(1600)) * time.Millisecond)
		alive()
		v := rng.IntN(2)
		before := pos()
		if k == kills-1 && holderKills == 0 && before.Owner == names[1-v] {
			v = 1 - v // at least one kill takes the fence holder down
		}
		s := 1 - v
		wasHolder := before.Owner == names[v]
		if wasHolder {
			holderKills++
		}
		cur[v].kill()
		cur[v] = nil
		// The survivor is applying: it owns the fence and the position
		// moves past where it was at the kill.
		took := waitFor(fmt.Sprintf("kill %d: %s takes over from %s", k+1, names[s], names[v]), 20*time.Second, func() bool {
			return pos().Owner == names[s]
		})
		moved := waitFor(fmt.Sprintf("kill %d: %s applies", k+1, names[s]), 20*time.Second, func() bool {
			p := pos()
			return p.Owner == names[s] && p.Seq > before.Seq
		})
		t.Logf("kill %d at %s: %s (holder: %t, seq %d epoch %d); %s owns the fence after %s, position moves after %s",
			k+1, time.Since(loadStart).Round(time.Millisecond), names[v], wasHolder, before.Seq, before.Epoch, names[s],
			took.Round(time.Millisecond), moved.Round(time.Millisecond))
		launch(v)
		waitFor(fmt.Sprintf("kill %d: restarted %s says its role", k+1, names[v]), 30*time.Second, func() bool { return saysRole(cur[v]) })
	}
	// Load for at least 15 s in all.
	if rest := 15*time.Second - time.Since(loadStart); rest > 0 {
		time.Sleep(rest)
	}
	alive()
	r := stopLoad()
	must(t, r.err)
	t.Logf("load: %d operations, %d transactions in %s", r.ops, r.txns, time.Since(loadStart).Round(time.Millisecond))
	if r.ops < 500 || r.txns == 0 {
		t.Fatalf("load too small to mean anything: %d operations, %d transactions", r.ops, r.txns)
	}

	e.waitExact(time.Minute)
	final := pos()
	for i, p := range cur {
		if code := p.terminate(); code != 0 {
			t.Fatalf("%s: graceful stop exited %d:\n%s", names[i], code, p.tail())
		}
	}
	e.assertNoDoubleApply()
	if final.Owner != names[0] && final.Owner != names[1] {
		t.Fatalf("final fence owner %q is neither instance", final.Owner)
	}
	// Each kill of the holder made the other take the consumer: a new
	// epoch each time.
	if final.Epoch-firstEpoch < int64(holderKills) {
		t.Fatalf("fence epoch went from %d to %d over %d kills of the holder", firstEpoch, final.Epoch, holderKills)
	}

	// The stand-by logs name the holder: every "standing by" line names
	// the other instance, and there is at least one of the sink's and one
	// of the tailer's. The sink's fence names instances as configured, the
	// tailer's as "<instance>:<pid>:<nonce>".
	standby := map[string]int{}
	for i := range names {
		for _, p := range all[i] {
			for _, l := range logLines(p.out.String()) {
				if !strings.HasPrefix(l.msg, "standing by") {
					continue
				}
				part, _ := l.fields["logger"].(string)
				standby[part]++
				holder, _ := l.fields["holder"].(string)
				self, _ := l.fields["self"].(string)
				if part == "tailer" {
					// A restarted tailer may stand by for its own killed
					// predecessor (same instance, another pid) until the
					// takeover: the holder is another process, of either
					// instance.
					if holder == self || !slices.Contains(names[:], strings.Split(holder, ":")[0]) {
						t.Errorf("%s logged %q with holder=%q self=%q: %s", names[i], l.msg, holder, self, l.raw)
					}
					if s, _, _ := strings.Cut(self, ":"); s != names[i] {
						t.Errorf("%s logged self=%v: %s", names[i], self, l.raw)
					}
					continue
				}
				if holder != names[1-i] {
					t.Errorf("%s logged %q with holder=%v, want %s: %s", names[i], l.msg, l.fields["holder"], names[1-i], l.raw)
				}
				if self != "" && self != names[i] {
					t.Errorf("%s logged self=%v: %s", names[i], l.fields["self"], l.raw)
				}
			}
		}
	}
	if standby["sink"] == 0 || standby["tailer"] == 0 {
		t.Fatalf("stand-by lines per part %v: the sink and the tailer must each have said who holds their fence:\n%s", standby, dump())
	}
	t.Logf("stand-by lines %v; final owner %s epoch %d seq %d; wall time %s", standby, final.Owner, final.Epoch, final.Seq,
		time.Since(start).Round(time.Millisecond))
}

// twoRunTxn is one Mongo multi-document transaction of the load: two
// widget updates and a gadget insert.
func twoRunTxn(ctx context.Context, e *env, l *load) error {
	db := e.client.Database(e.dbName)
	ws := l.live["widgets"]
	i := l.rng.IntN(len(ws))
	j := (i + 1 + l.rng.IntN(len(ws)-1)) % len(ws)
	g := bson.NewObjectID()
	gdoc := l.doc("gadgets", g, 1)
	qty := l.rng.Int64N(1000)
	sess, err := e.client.StartSession()
	if err != nil {
		return err
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		if _, err := db.Collection("widgets").UpdateByID(sc, ws[i], bson.D{{Key: "$set", Value: bson.D{{Key: "qty", Value: qty}}}, {Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}}); err != nil {
			return nil, err
		}
		if _, err := db.Collection("gadgets").InsertOne(sc, gdoc); err != nil {
			return nil, err
		}
		_, err := db.Collection("widgets").UpdateByID(sc, ws[j], bson.D{{Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}})
		return nil, err
	})
	if err != nil {
		return err
	}
	l.live["gadgets"] = append(l.live["gadgets"], g)
	return nil
}

// logLine is one JSON zap line of a process's output.
type logLine struct {
	msg    string
	fields map[string]any
	raw    string
}

func logLines(out string) []logLine {
	var ls []logLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		raw := sc.Text()
		if !strings.HasPrefix(raw, "{") {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(raw), &m) != nil {
			continue
		}
		msg, _ := m["msg"].(string)
		ls = append(ls, logLine{msg: msg, fields: m, raw: raw})
	}
	return ls
}

// loadResult is what startMixedLoad's load did.
type loadResult struct {
	ops, txns int
	err       error
}

// startMixedLoad runs the harness's mixed single-document writes, and
// every 40th step a multi-document transaction (twoRunTxn), until the
// returned stop is called; stop waits for it and says what it did (err: a
// write that failed before stop). stop may be called more than once.
func startMixedLoad(e *env, seed uint64) (stop func() loadResult) {
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan loadResult, 1)
	go func() {
		l := newLoad(e, seed)
		var r loadResult
		defer func() { done <- r }()
		for ctx.Err() == nil {
			if r.ops%40 == 39 && len(l.live["widgets"]) >= 2 {
				if err := twoRunTxn(ctx, e, l); err != nil {
					if ctx.Err() == nil {
						r.err = fmt.Errorf("transaction %d: %w", r.txns, err)
					}
					return
				}
				r.txns++
			} else if err := l.step(ctx); err != nil {
				if ctx.Err() == nil {
					r.err = fmt.Errorf("op %d: %w", r.ops, err)
				}
				return
			}
			r.ops++
		}
	}()
	var once sync.Once
	var res loadResult
	return func() loadResult {
		once.Do(func() { cancel(); res = <-done })
		return res
	}
}
