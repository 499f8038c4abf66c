package bus_test

// Cluster-ready streams: the replicator's JetStream assets on a real
// three-node cluster (bustest.StartCluster). These run in `go test
// ./pkg/bus` (well under a minute each: the cluster forms in a few
// seconds and a stream election takes 4-9 s, nats-server raft.go
// minElectionTimeout/maxElectionTimeout).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/snapshot"
)

func clusterStreams(replicas int) bus.StreamsConfig {
	return bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: replicas,
		DedupWindow: 2 * time.Minute, MaxAge: 24 * time.Hour, MaxBytes: -1, CheckpointBucket: "cdc_checkpoints"}
}

// assetStreams are the streams behind every asset the replicator
// declares: the change and dead-letter streams, the checkpoint and
// snapshot-progress KV buckets (stream KV_<bucket>) and the large-event
// object store (stream OBJ_<bucket>), the names nats.go gives them
// (jetstream/kv.go kvBucketNameTmpl, jetstream/object.go objNameTmpl).
func assetStreams(c bus.StreamsConfig, progressBucket string) []string {
	return []string{c.Stream, c.DLQStream, "KV_" + c.CheckpointBucket, "KV_" + progressBucket, "OBJ_" + c.LargeBucket()}
}

// replicasOf is the stream's configured replicas and how many servers
// host it (the leader plus ClusterInfo.Replicas, its followers).
func replicasOf(ctx context.Context, js jetstream.JetStream, name string) (configured, hosted int, err error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s info: %w", name, err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return info.Config.Replicas, 0, nil
	}
	return info.Config.Replicas, 1 + len(info.Cluster.Replicas), nil
}

// waitReplicas polls until every stream of names is configured and
// hosted with want replicas (a scale-up adds peers asynchronously).
func waitReplicas(t *testing.T, ctx context.Context, js jetstream.JetStream, names []string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var bad []string
		for _, n := range names {
			cfgd, hosted, err := replicasOf(ctx, js, n)
			if err != nil || cfgd != want || hosted != want {
				bad = append(bad, fmt.Sprintf("%s: configured %d, hosted on %d (%v)", n, cfgd, hosted, err))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every asset has %d replicas within 30s:\n%v", want, bad)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterAssetsReplicas: with nats.replicas 3 every asset the
// replicator declares (bus.Ensure, snapshot.OpenProgressBucket) is R3 on
// a three-node cluster, including the sink's durable consumer created
// without a replica count as pkg/sink does; declaring again is a no-op;
// and an R1 declaration followed by an R3 one scales every asset up (an
// operator raising nats.replicas on a running cluster).
func TestClusterAssetsReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := bustest.StartCluster(t, 3)
	_, js := cl.Connect(t)

	for _, tc := range []struct {
		name  string
		first int // 0: no earlier declaration
	}{
		{name: "declared R3", first: 0},
		{name: "R1 scaled to R3", first: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := clusterStreams(3)
			// Distinct names per case: one cluster serves both.
			sfx := fmt.Sprintf("_%d", tc.first)
			c.Stream, c.DLQStream, c.SubjectPrefix, c.CheckpointBucket = c.Stream+sfx, c.DLQStream+sfx, c.SubjectPrefix+sfx, c.CheckpointBucket+sfx
			progress := "cdc_snapshot" + sfx
			if tc.first > 0 {
				r1 := c
				r1.Replicas = tc.first
				if err := bus.Ensure(ctx, js, r1); err != nil {
					t.Fatalf("declare R%d: %v", tc.first, err)
				}
				if _, err := snapshot.OpenProgressBucket(ctx, js, progress, tc.first); err != nil {
					t.Fatal(err)
				}
				waitReplicas(t, ctx, js, assetStreams(c, progress), tc.first)
			}
			for range 2 { // the second declaration must succeed unchanged
				if err := bus.Ensure(ctx, js, c); err != nil {
					t.Fatalf("declare R3: %v", err)
				}
				if _, err := snapshot.OpenProgressBucket(ctx, js, progress, 3); err != nil {
					t.Fatal(err)
				}
			}
			waitReplicas(t, ctx, js, assetStreams(c, progress), 3)

			// The sink's consumer: durable, no Replicas (pkg/sink/sink.go
			// reconcile), so it takes the stream's (nats-server
			// consumer.go, ConsumerConfig.replicas).
			st, err := js.Stream(ctx, c.Stream)
			if err != nil {
				t.Fatal(err)
			}
			cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "cdc-sink", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				ci, err := cons.Info(ctx)
				if err == nil && ci.Cluster != nil && ci.Cluster.Leader != "" && 1+len(ci.Cluster.Replicas) == 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the sink's consumer is not hosted on 3 servers within 30s: %+v (%v)", ci, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// TestClusterPublishSurvivesLeaderLoss: events published to an R3 stream
// before, during and after the loss of the stream's leader node are all
// kept exactly once: the client reconnects to another node, the two
// survivors elect a leader, a publish retried with its Nats-Msg-Id is
// deduplicated, and the restarted node catches up. The node is lost by a
// crash (no hand-over: an election after 4-9 s) and by a clean stop
// (leadership handed over at once).
func TestClusterPublishSurvivesLeaderLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(*bustest.Node)
	}{
		{"crash", (*bustest.Node).Kill},
		{"clean stop", (*bustest.Node).Stop},
	} {
		t.Run(tc.name, func(t *testing.T) { publishThroughLeaderLoss(t, tc.lose) })
	}
}

func publishThroughLeaderLoss(t *testing.T, lose func(*bustest.Node)) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := bustest.StartCluster(t, 3)
	nc, js := cl.Connect(t)
	c := clusterStreams(3)
	if err := bus.Ensure(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	leader, err := cl.WaitStreamLeader(ctx, js, c.Stream, "")
	if err != nil {
		t.Fatal(err)
	}

	// publish retries one message with the same id until it is stored,
	// as the tailer retries from its checkpoint: a copy whose first
	// attempt was stored after all comes back as a duplicate.
	const total = 400
	publish := func(i int) {
		t.Helper()
		msg := &nats.Msg{Subject: c.Subject("escrow", "payments"), Data: fmt.Appendf(nil, "event %d", i), Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("ev-%d", i))
		deadline := time.Now().Add(45 * time.Second)
		for {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.PublishMsg(pctx, msg)
			pcancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %d: not stored within 45s: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i := range total / 2 {
		publish(i)
	}
	// The client knows the cluster through the gates only (each node
	// advertises its gate), or Kill's cut would miss it.
	for _, u := range nc.Servers() {
		if !slices.Contains(cl.URLs(), u) {
			t.Fatalf("the client learnt server %s, not a gate of %v", u, cl.URLs())
		}
	}
	killed := time.Now()
	lose(leader)
	for i := total / 2; i < total; i++ {
		publish(i)
	}
	stored := time.Since(killed)
	next, err := cl.WaitStreamLeader(ctx, js, c.Stream, leader.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed leader %s; %s leads; the second half was stored %s after the kill (client on %s)",
		leader.Name, next.Name, stored.Round(time.Millisecond), nc.ConnectedUrl())

	check := func() error {
		st, err := js.Stream(ctx, c.Stream)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != total || info.State.FirstSeq != 1 || info.State.LastSeq != total {
			return fmt.Errorf("stream holds %d messages (%d..%d), want %d (1..%d)", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, total, total)
		}
		var seen []string
		for seq := uint64(1); seq <= total; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				return fmt.Errorf("message %d: %w", seq, err)
			}
			id := m.Header.Get(jetstream.MsgIDHeader)
			if slices.Contains(seen, id) {
				return fmt.Errorf("message %d repeats %s", seq, id)
			}
			seen = append(seen, id)
		}
		return nil
	}
	if err := check(); err != nil {
		t.Fatalf("after the leader's loss: %v", err)
	}

	// The node comes back and catches up: once current, it holds the
	// same messages (asked directly, through the server's own view).
	if err := leader.Restart(); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, bustest.ClusterFormTimeout)
	defer rcancel()
	if err := cl.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	for !leader.Server().JetStreamIsStreamCurrent("$G", c.Stream) {
		if rctx.Err() != nil {
			t.Fatalf("restarted node %s did not catch up on stream %s: %v", leader.Name, c.Stream, rctx.Err())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := check(); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
}

// TestClusterNotReadyIsAnError: WaitReady, the condition StartCluster
// fails the test on, reports a cluster missing a node as not ready with
// the reason once its deadline passes, and ready again after the node's
// restart.
func TestClusterNotReadyIsAnError(t *testing.T) {
	cl := bustest.StartCluster(t, 3)
	n2 := cl.Nodes()[1]
	n2.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := cl.WaitReady(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "node n2 is not running") {
		t.Fatalf("want a deadline error naming n2, got %v", err)
	}
	if err := n2.Restart(); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), bustest.ClusterFormTimeout)
	defer rcancel()
	if err := cl.WaitReady(rctx); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
}
