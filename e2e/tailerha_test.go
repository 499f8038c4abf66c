package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/status"
	"github.com/amanat/cdc/pkg/tailer"
)

// ckptWrite is one write of the tailer's checkpoint, as a KV watcher in
// the test saw it.
type ckptWrite struct {
	at    time.Time
	owner string
	cp    *checkpoint.Checkpoint
}

// TestTwoTailersTakeover (acceptance 2, and the takeover times of
// acceptance 5): two `cdc tail` processes (tail-a, tail-b) and one
// `cdc sink` on one NATS server, one Postgres database and one Mongo,
// under a load of single-document writes and multi-document transactions.
// The active tailer is killed -9 ten times, and restarted each time as the
// new standby. Each time the standby takes the checkpoint over within
// tailer.standby_takeover plus a small bound (measured from the kill to the
// checkpoint's first write by the new holder, and to its first publish);
// at the end Postgres equals Mongo exactly, the audit trigger shows no
// event applied twice, and `cdc status` names the holder, since when, and
// the last takeover.
func TestTwoTailersTakeover(t *testing.T) {
	start := time.Now()
	e := newEnv(t)
	n := e.startNATS()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>9))

	// Short, so ten takeovers fit in the test; production default 10s.
	const takeover = 2 * time.Second
	names := [2]string{"tail-a", "tail-b"}
	startAt := e.startAt()
	mk := func(name string) string {
		cfg := e.config(n.url(), filepath.Join(e.dir, "data-"+name))
		cfg.Tailer.StartAt = startAt
		cfg.Tailer.Instance = name
		cfg.Sink.Instance = name
		cfg.Tailer.StandbyTakeover = takeover
		cfg.Log.Level = "info"
		cfg.Log.Format = "json"
		return e.writeConfig(cfg)
	}
	cfgPaths := [2]string{mk(names[0]), mk(names[1])}
	sinkCfg := mk("sink")
	interval := e.config(n.url(), "").Tailer.CheckpointInterval
	bound := takeover + 2*interval + 1500*time.Millisecond

	// The test's own view of NATS: the checkpoint's writes and every
	// message published on the change subjects.
	nc, err := nats.Connect(n.url())
	must(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	must(t, err)
	base := e.config(n.url(), "")
	var mu sync.Mutex
	var writes []ckptWrite
	firstPub := map[string]time.Time{} // tailer owner -> its first message seen
	sub, err := nc.Subscribe(base.NATS.SubjectPrefix+".>", func(m *nats.Msg) {
		by := m.Header.Get(tailer.HeaderTailer)
		mu.Lock()
		if _, ok := firstPub[by]; !ok {
			firstPub[by] = time.Now()
		}
		mu.Unlock()
	})
	must(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	var all [2][]*process
	var cur [2]*process
	launch := func(i int) {
		p := e.startCommand("tail", cfgPaths[i])
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
	var sinkProc *process
	alive := func() {
		t.Helper()
		for i, p := range append(cur[:], sinkProc) {
			if p == nil {
				continue
			}
			select {
			case <-p.done:
				what := "sink"
				if i < 2 {
					what = names[i]
				}
				t.Fatalf("%s exited on its own (code %d):\n%s\n--- sink ---\n%s", what, p.cmd.ProcessState.ExitCode(), dump(), sinkProc.tail())
			default:
			}
		}
	}
	waitFor := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		t0 := time.Now()
		for !cond() {
			alive()
			if time.Since(t0) > d {
				t.Fatalf("%s: not within %s\n%s", what, d, dump())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	ownerOf := func(p *process, name string) string { return name + ":" + strconv.Itoa(p.cmd.Process.Pid) + ":" }
	standingBy := func(p *process) bool {
		for _, l := range logLines(p.out.String()) {
			if part, _ := l.fields["logger"].(string); part == "tailer" && strings.HasPrefix(l.msg, "standing by") {
				return true
			}
		}
		return false
	}

	launch(0)
	// The bucket exists once the first tailer declared it: then watch.
	var kv jetstream.KeyValue
	waitFor("the checkpoint bucket", 30*time.Second, func() bool {
		kv, err = js.KeyValue(e.ctx, base.NATS.CheckpointBucket)
		return err == nil
	})
	wctx, stopWatch := context.WithCancel(e.ctx)
	defer stopWatch()
	w, err := kv.Watch(wctx, checkpoint.Key(e.dbName))
	must(t, err)
	go func() {
		for en := range w.Updates() {
			if en == nil || en.Operation() != jetstream.KeyValuePut {
				continue
			}
			cp, err := checkpoint.Decode(en.Value())
			if err != nil {
				t.Errorf("checkpoint revision %d: %v", en.Revision(), err)
				continue
			}
			mu.Lock()
			writes = append(writes, ckptWrite{at: time.Now(), owner: cp.Owner, cp: cp})
			mu.Unlock()
		}
	}()
	holder := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(writes) == 0 {
			return ""
		}
		return writes[len(writes)-1].owner
	}
	// firstWriteBy is when the checkpoint was first written by an owner
	// with prefix after t0 (zero: not yet).
	firstWriteBy := func(prefix string, t0 time.Time) (time.Time, string) {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range writes {
			if strings.HasPrefix(w.owner, prefix) && !w.at.Before(t0) {
				return w.at, w.owner
			}
		}
		return time.Time{}, ""
	}
	waitFor("tail-a holds the checkpoint", 30*time.Second, func() bool { return strings.HasPrefix(holder(), ownerOf(cur[0], names[0])) })
	launch(1)
	waitFor("tail-b stands by", 30*time.Second, func() bool { return standingBy(cur[1]) })
	sinkProc = e.startCommand("sink", sinkCfg)

	stopLoad := startMixedLoad(e, seed)
	defer stopLoad()
	loadStart := time.Now()

	const kills = 10
	var claims, pubs []time.Duration
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		alive()
		h := holder()
		v := -1
		for i := range names {
			if strings.HasPrefix(h, ownerOf(cur[i], names[i])) {
				v = i
			}
		}
		if v < 0 {
			t.Fatalf("kill %d: the checkpoint's holder %q is neither running tailer\n%s", k+1, h, dump())
		}
		s := 1 - v
		next := ownerOf(cur[s], names[s])
		killed := time.Now()
		cur[v].kill()
		cur[v] = nil
		var claimAt time.Time
		var owner string
		waitFor(fmt.Sprintf("kill %d: %s takes over from %s", k+1, names[s], h), bound+5*time.Second, func() bool {
			claimAt, owner = firstWriteBy(next, killed)
			return !claimAt.IsZero()
		})
		var pubAt time.Time
		waitFor(fmt.Sprintf("kill %d: %s publishes", k+1, owner), 20*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			pubAt = firstPub[owner]
			return !pubAt.IsZero()
		})
		claim, pub := claimAt.Sub(killed), pubAt.Sub(killed)
		claims, pubs = append(claims, claim), append(pubs, pub)
		t.Logf("kill %d at %s: %s killed; %s took the checkpoint over after %s, first publish after %s",
			k+1, time.Since(loadStart).Round(time.Millisecond), h, owner, claim.Round(time.Millisecond), pub.Round(time.Millisecond))
		if claim > bound {
			t.Errorf("kill %d: takeover after %s, over tailer.standby_takeover %s + bound = %s", k+1, claim, takeover, bound)
		}
		launch(v)
		waitFor(fmt.Sprintf("kill %d: restarted %s stands by", k+1, names[v]), 30*time.Second, func() bool { return standingBy(cur[v]) })
	}
	alive()
	r := stopLoad()
	must(t, r.err)
	t.Logf("load: %d operations, %d transactions in %s", r.ops, r.txns, time.Since(loadStart).Round(time.Millisecond))
	if r.ops < 500 || r.txns == 0 {
		t.Fatalf("load too small to mean anything: %d operations, %d transactions", r.ops, r.txns)
	}
	e.waitExact(time.Minute)
	e.assertNoDoubleApply()

	stat := func(ds []time.Duration) string {
		s := slices.Clone(ds)
		slices.Sort(s)
		return fmt.Sprintf("min %s, median %s, max %s", s[0].Round(time.Millisecond), s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
	}
	t.Logf("takeover over %d kills -9 (standby_takeover %s, checkpoint_interval %s): kill -> new holder's checkpoint write: %s; kill -> its first publish: %s",
		kills, takeover, interval, stat(claims), stat(pubs))

	// cdc status names the holder, since when, and the last takeover.
	final := holder()
	_, rep, out := e.statusCLI(cfgPaths[0])
	l := rep.Tailer.Lease
	if l == nil || l.Holder != final || l.State != status.LeaseHeld || l.HeldSince == nil || l.LastTakeover == nil ||
		l.LastTakeover.To != final || l.LastTakeover.Reason != checkpoint.TakeoverExpired || l.Takeovers < kills {
		t.Fatalf("cdc status lease section %+v, want holder %s with its takeover (>= %d recorded):\n%s", l, final, kills, out)
	}
	if q := l.LastTakeover.QuietSeconds; q < takeover.Seconds() {
		t.Fatalf("last takeover after %.3fs quiet, under standby_takeover %s", q, takeover)
	}

	for i, p := range cur {
		if code := p.terminate(); code != 0 {
			t.Fatalf("%s: graceful stop exited %d:\n%s", names[i], code, p.tail())
		}
	}
	if code := sinkProc.terminate(); code != 0 {
		t.Fatalf("sink: graceful stop exited %d:\n%s", code, sinkProc.tail())
	}
	t.Logf("wall time %s", time.Since(start).Round(time.Millisecond))
}
