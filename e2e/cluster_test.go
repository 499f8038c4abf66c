//go:build cluster

package e2e

// High availability on a NATS JetStream cluster (issue 11, acceptance 1):
// the replicator, the built binary (`cdc run`), pointed at a three-node
// cluster (nats.url lists the three nodes, nats.replicas 3) runs under
// load while the node leading the change stream is killed, three times;
// the pipeline goes on and ends exact, and the operator commands work
// against the cluster unchanged.
//
// Slow (three elections of 4-9 s each plus the load): behind the build
// tag `cluster`, run by `go test -tags cluster ./e2e/ -run Cluster`.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/dlq"
	"github.com/amanat/cdc/pkg/state"
)

// clusterKills is how many times the stream leader is killed.
const clusterKills = 3

// TestClusterStreamLeaderKilledUnderLoad: kill the change stream's leader
// node (a crash: bustest.Node.Kill cuts it off before it can hand its
// leadership over) while the load runs; the two survivors elect a leader,
// the replicator's connection moves to a surviving node, the pipeline
// continues, and after the load Postgres equals Mongo exactly with no
// event applied twice. Between kills the node comes back and catches up.
// The stall (kill until the sink's position moves, and until it passes
// what the stream held at the kill) is logged per kill.
func TestClusterStreamLeaderKilledUnderLoad(t *testing.T) {
	e := newEnv(t)
	cl := bustest.StartCluster(t, 3)
	_, js := cl.Connect(t)

	cfg := e.config(cl.URL(), e.dir)
	cfg.NATS.Replicas = 3
	cfg.Tailer.StartAt = e.startAt()
	cfg.Snapshot.AllowedTargets = []string{"127.0.0.1"}
	// The test oplog is seconds old: a headroom threshold would make
	// status unhealthy (as in status_test.go).
	cfg.Oplog.HeadroomWarning = 0
	cfg.Log.Level = "info"
	cfg.Log.Format = "json"
	path := e.writeConfig(cfg)
	p := e.startProcess(path)
	alive := func() {
		t.Helper()
		select {
		case <-p.done:
			t.Fatalf("cdc run exited on its own (code %d):\n%s", p.cmd.ProcessState.ExitCode(), p.tail())
		default:
		}
	}
	ctx, cancel := context.WithTimeout(e.ctx, 8*time.Minute)
	defer cancel()
	pos := func() uint64 {
		t.Helper()
		ps, _, err := state.ReadPosition(ctx, e.pool, cfg.Sink.Consumer)
		must(t, err)
		return ps.Seq
	}
	// waitFor polls cond every 10 ms; it fails after d or when the
	// replicator exits, and returns how long it took.
	waitFor := func(what string, d time.Duration, cond func() bool) time.Duration {
		t.Helper()
		t0 := time.Now()
		for !cond() {
			alive()
			if time.Since(t0) > d {
				t.Fatalf("%s: not within %s (sink position %d)\n%s\n%s", what, d, pos(), clusterState(ctx, js, cfg.NATS.Stream, cfg.Sink.Consumer), warnings(p.out.String()))
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(t0)
	}
	lastSeq := func() uint64 {
		t.Helper()
		st, err := js.Stream(ctx, cfg.NATS.Stream)
		must(t, err)
		info, err := st.Info(ctx)
		must(t, err)
		return info.State.LastSeq
	}

	// The load runs from now until after the last kill has recovered.
	var ops atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadErr := make(chan error, 1)
	go func() {
		l := newLoad(e, uint64(time.Now().UnixNano()))
		// Paced (at most 400 operations a second, a rate the sink keeps up
		// with on this machine), so the stall measured is the kill's, not
		// a backlog's.
		pace := time.NewTicker(2500 * time.Microsecond)
		defer pace.Stop()
		for loadCtx.Err() == nil {
			select {
			case <-pace.C:
			case <-loadCtx.Done():
			}
			if err := l.run(loadCtx, 1); err != nil && loadCtx.Err() == nil {
				loadErr <- err
				return
			}
			ops.Add(1)
		}
		loadErr <- nil
	}()
	defer stopLoad()

	waitFor("the sink applies the first events", time.Minute, func() bool { return pos() > 0 })
	type stall struct {
		node, consumerLeader  string
		election, moved, past time.Duration
	}
	var stalls []stall
	for k := range clusterKills {
		at := ops.Load() + 1000
		waitFor(fmt.Sprintf("kill %d: 1000 more operations of load", k+1), 2*time.Minute, func() bool { return ops.Load() >= at })
		leader, err := cl.WaitStreamLeader(ctx, js, cfg.NATS.Stream, "")
		must(t, err)
		cons := ""
		if c, err := js.Consumer(ctx, cfg.NATS.Stream, cfg.Sink.Consumer); err == nil {
			if ci, err := c.Info(ctx); err == nil && ci.Cluster != nil {
				cons = ci.Cluster.Leader
			}
		}
		pos0, last0 := pos(), lastSeq()
		killed := time.Now()
		leader.Kill()
		var s stall
		s.node, s.consumerLeader = leader.Name, cons
		if _, err := cl.WaitStreamLeader(ctx, js, cfg.NATS.Stream, leader.Name); err != nil {
			t.Fatalf("kill %d: %v", k+1, err)
		}
		s.election = time.Since(killed)
		s.moved = time.Since(killed)
		if pos() <= pos0 {
			waitFor(fmt.Sprintf("kill %d: the sink's position moves", k+1), 2*time.Minute, func() bool { return pos() > pos0 })
			s.moved = time.Since(killed)
		}
		waitFor(fmt.Sprintf("kill %d: the sink passes sequence %d, the stream's last at the kill", k+1, last0), 2*time.Minute,
			func() bool { return pos() > last0 })
		s.past = time.Since(killed)
		stalls = append(stalls, s)
		t.Logf("kill %d: node %s (stream leader; consumer leader %s) at sink position %d, stream last %d; new stream leader after %s; "+
			"sink position moved after %s, passed %d after %s", k+1, s.node, s.consumerLeader, pos0, last0,
			s.election.Round(time.Millisecond), s.moved.Round(time.Millisecond), last0, s.past.Round(time.Millisecond))

		must(t, leader.Restart())
		rctx, rcancel := context.WithTimeout(ctx, bustest.ClusterFormTimeout)
		if err := cl.WaitReady(rctx); err != nil {
			rcancel()
			t.Fatalf("kill %d: the node's return: %v", k+1, err)
		}
		rcancel()
		waitCurrent(t, ctx, js, leader)
	}
	at := ops.Load() + 1000
	waitFor("1000 more operations after the last kill", 2*time.Minute, func() bool { return ops.Load() >= at })
	stopLoad()
	must(t, <-loadErr)
	t.Logf("load: %d operations", ops.Load())
	e.waitExact(3 * time.Minute)
	alive()
	e.assertNoDoubleApply()
	var moved, past []time.Duration
	for _, s := range stalls {
		moved, past = append(moved, s.moved), append(past, s.past)
	}
	slices.Sort(moved)
	slices.Sort(past)
	t.Logf("stall over %d stream-leader kills: position moves again after min %s / max %s; passes the stream's last sequence at the kill after min %s / max %s",
		len(stalls), moved[0].Round(time.Millisecond), moved[len(moved)-1].Round(time.Millisecond),
		past[0].Round(time.Millisecond), past[len(past)-1].Round(time.Millisecond))

	// The operator commands, once each, against the cluster.
	code, rep, out := e.statusCLI(path)
	if code != 0 || !rep.Healthy || rep.Stream.LastSeq == 0 || rep.Sink.StreamSeq != rep.Stream.LastSeq {
		t.Fatalf("cdc status on the cluster: exit %d, healthy %t, stream last %d, sink %d:\n%s", code, rep.Healthy, rep.Stream.LastSeq, rep.Sink.StreamSeq, out)
	}
	var dls []dlq.Entry
	e.cdcJSON(path, 0, &dls, "dlq", "list")
	if len(dls) != 0 {
		t.Fatalf("cdc dlq list: %d open dead letters, want none", len(dls))
	}
	if r := e.cdc(path, "replay", "stream", "--from-seq", "1", "--dry-run"); r.code != 0 {
		t.Fatalf("cdc replay stream --dry-run on the cluster: %s", r)
	} else {
		t.Logf("cdc replay stream --from-seq 1 --dry-run:\n%s", tail(r.stdout+r.stderr, 1500))
	}
	if r := e.cdc(path, "snapshot", "--progress", "none", "--collections", "widgets"); r.code != 0 {
		t.Fatalf("cdc snapshot on the cluster: %s", r)
	} else {
		t.Logf("cdc snapshot --collections widgets:\n%s", tail(r.stdout+r.stderr, 1500))
	}
	e.waitExact(time.Minute)
	e.assertNoDoubleApply()

	// Every asset the replicator declared, the snapshot's progress bucket
	// included, is R3, and so is the sink's consumer (it inherits the
	// stream's replicas).
	assertAllR3(t, ctx, js, cfg.NATS.Stream, cfg.Sink.Consumer)

	if code := p.terminate(); code != 0 {
		t.Fatalf("graceful stop exited %d:\n%s", code, p.tail())
	}
	t.Logf("the replicator reconnected %d times", strings.Count(p.out.String(), "nats reconnected"))
}

// waitCurrent waits until node nd holds a current copy of every stream
// on the cluster (KV buckets and object stores are streams too), so the
// next kill leaves two current replicas of each.
func waitCurrent(t *testing.T, ctx context.Context, js jetstream.JetStream, nd *bustest.Node) {
	t.Helper()
	var names []string
	l := js.StreamNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	must(t, l.Err())
	deadline := time.Now().Add(time.Minute)
	for _, n := range names {
		for !nd.Server().JetStreamIsStreamCurrent("$G", n) {
			if time.Now().After(deadline) {
				t.Fatalf("restarted node %s did not catch up on stream %s within a minute", nd.Name, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// assertAllR3 fails unless every stream on the cluster is configured
// with three replicas and hosted on three servers, and the durable
// consumer of stream is hosted on three.
func assertAllR3(t *testing.T, ctx context.Context, js jetstream.JetStream, stream, consumer string) {
	t.Helper()
	var bad, seen []string
	l := js.ListStreams(ctx)
	for info := range l.Info() {
		seen = append(seen, info.Config.Name)
		hosted := 0
		if info.Cluster != nil && info.Cluster.Leader != "" {
			hosted = 1 + len(info.Cluster.Replicas)
		}
		if info.Config.Replicas != 3 || hosted != 3 {
			bad = append(bad, fmt.Sprintf("%s: replicas %d, hosted on %d", info.Config.Name, info.Config.Replicas, hosted))
		}
	}
	must(t, l.Err())
	c, err := js.Consumer(ctx, stream, consumer)
	must(t, err)
	ci, err := c.Info(ctx)
	must(t, err)
	if ci.Cluster == nil || ci.Cluster.Leader == "" || 1+len(ci.Cluster.Replicas) != 3 {
		bad = append(bad, fmt.Sprintf("consumer %s: cluster %+v", consumer, ci.Cluster))
	}
	// The change and dead-letter streams, the checkpoint and snapshot
	// progress buckets and the large-event store.
	if len(seen) < 5 {
		bad = append(bad, fmt.Sprintf("only streams %v", seen))
	}
	if len(bad) > 0 {
		t.Fatalf("not every asset is R3:\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("R3: %v and consumer %s", seen, consumer)
}

// clusterState describes the stream and the sink's consumer, for a
// failure message.
func clusterState(ctx context.Context, js jetstream.JetStream, stream, consumer string) string {
	var b strings.Builder
	if st, err := js.Stream(ctx, stream); err != nil {
		fmt.Fprintf(&b, "stream %s: %v\n", stream, err)
	} else if info, err := st.Info(ctx); err != nil {
		fmt.Fprintf(&b, "stream %s info: %v\n", stream, err)
	} else {
		fmt.Fprintf(&b, "stream %s: %+v cluster %+v\n", stream, info.State, info.Cluster)
	}
	if c, err := js.Consumer(ctx, stream, consumer); err != nil {
		fmt.Fprintf(&b, "consumer %s: %v\n", consumer, err)
	} else if ci, err := c.Info(ctx); err != nil {
		fmt.Fprintf(&b, "consumer %s info: %v\n", consumer, err)
	} else {
		fmt.Fprintf(&b, "consumer %s: delivered %+v ack floor %+v pending %d ack pending %d waiting %d redelivered %d cluster %+v\n",
			consumer, ci.Delivered, ci.AckFloor, ci.NumPending, ci.NumAckPending, ci.NumWaiting, ci.NumRedelivered, ci.Cluster)
	}
	return b.String()
}

// warnings are the process's log lines above info, and its last lines.
func warnings(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, `"level":"info"`) {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return tail(b.String(), 20000)
}
