package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
)

func laneCfg(lanes ...bus.Lane) bus.StreamsConfig {
	return bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", CheckpointBucket: "cdc_ckpt",
		Replicas: 1, DedupWindow: time.Minute, MaxAge: time.Hour}.WithLanes(lanes)
}

func split(group string, parts int, colls ...string) []bus.Lane {
	var out []bus.Lane
	for p := range parts {
		out = append(out, bus.Lane{Name: fmt.Sprintf("%s_%d", group, p), Collections: colls, Group: group, Part: p, Parts: parts})
	}
	return out
}

func TestLayoutString(t *testing.T) {
	tests := []struct {
		c    bus.StreamsConfig
		want string
	}{
		{laneCfg(), ""},
		{laneCfg(bus.Lane{Name: "ledger", Collections: []string{"fundsLedger", "payments"}}, bus.Lane{Name: "users", Collections: []string{"users"}}),
			"ledger:fundsLedger+payments;users:users"},
		{laneCfg(append(split("pay", 3, "payments"), bus.Lane{Name: "users", Collections: []string{"users"}})...),
			"pay/3:payments;users:users"},
	}
	for _, tc := range tests {
		if got := tc.c.Layout(); got != tc.want {
			t.Errorf("Layout() = %q, want %q", got, tc.want)
		}
	}
}

// TestLaneLayoutChangeNeedsDrainedStreams: a process whose sink.lanes
// differs from the layout stamped on the lane streams may not declare its
// own while events routed by the old layout are unapplied; once they are,
// it declares its lanes and restamps the retired ones, and a process
// still on the old layout finds out (CheckLaneLayout).
func TestLaneLayoutChangeNeedsDrainedStreams(t *testing.T) {
	ctx := context.Background()
	js := startJS(t)
	a := laneCfg(bus.Lane{Name: "a", Collections: []string{"payments"}}, bus.Lane{Name: "b", Collections: []string{"users"}})
	b := laneCfg(append(split("p", 2, "payments"), bus.Lane{Name: "b", Collections: []string{"users"}})...)
	if err := bus.Ensure(ctx, js, a); err != nil {
		t.Fatal(err)
	}
	if err := bus.Ensure(ctx, js, a); err != nil {
		t.Fatalf("the same layout again: %v", err)
	}
	if err := bus.CheckLaneLayout(ctx, js, a); err != nil {
		t.Fatalf("CheckLaneLayout, same layout: %v", err)
	}
	for i := range 3 {
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: a.LaneSubject("a", "escrow", "payments"), Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	// Messages and no durable consumer: not drained.
	err := bus.Ensure(ctx, js, b)
	var le *bus.LaneLayoutError
	if !errors.As(err, &le) || !errors.Is(err, bus.ErrLaneLayout) {
		t.Fatalf("layout change over unconsumed messages: err %v, want a *LaneLayoutError", err)
	}
	if le.Want != b.Layout() || le.Have != a.Layout() || len(le.Pending) != 1 || !strings.HasPrefix(le.Pending[0], "CDC_a (3 pending)") {
		t.Fatalf("error %+v: want layouts %q/%q and CDC_a (3 pending)", le, b.Layout(), a.Layout())
	}
	// A durable consumer that has not acknowledged them: still not drained.
	st, err := js.Stream(ctx, "CDC_a")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "sink_a", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.Ensure(ctx, js, b); !errors.As(err, &le) || !strings.HasPrefix(le.Pending[0], "CDC_a (1 pending)") {
		t.Fatalf("one message unacknowledged: err %v, want CDC_a (1 pending)", err)
	}
	if _, err := js.Stream(ctx, "CDC_p_0"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("a refused layout declared its streams: %v", err)
	}
	// Everything acknowledged: the new layout is declared, the retired
	// lane restamped, and the old layout is told.
	batch, err = cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.Ensure(ctx, js, b); err != nil {
		t.Fatalf("drained: the new layout must be declared: %v", err)
	}
	for _, name := range []string{"CDC_p_0", "CDC_p_1", "CDC_b", "CDC_a"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := s.CachedInfo().Config.Metadata[bus.MetaLaneLayout]; got != b.Layout() {
			t.Fatalf("%s stamped %q, want %q", name, got, b.Layout())
		}
	}
	if err := bus.CheckLaneLayout(ctx, js, b); err != nil {
		t.Fatalf("CheckLaneLayout, new layout: %v", err)
	}
	err = bus.CheckLaneLayout(ctx, js, a)
	if !errors.As(err, &le) || le.Stream != "CDC_a" || le.Have != b.Layout() || len(le.Pending) != 0 {
		t.Fatalf("old layout while running: err %v, want a *LaneLayoutError naming CDC_a", err)
	}
	// The old layout cannot come back while the new one's events wait.
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: b.LaneSubject("p_1", "escrow", "payments"), Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Ensure(ctx, js, a); !errors.As(err, &le) || !strings.HasPrefix(strings.Join(le.Pending, ","), "CDC_p_1 (1 pending)") {
		t.Fatalf("back to the old layout over an unconsumed new lane: err %v", err)
	}
}
