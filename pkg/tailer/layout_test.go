package tailer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/tailer"
)

// TestTailerStopsOnLayoutChange: a running tailer with lanes stops, fatal,
// once the streams carry another process's sink.lanes, instead of routing
// events by a layout the sinks no longer read.
func TestTailerStopsOnLayoutChange(t *testing.T) {
	r := newRig(t, 0)
	if err := r.js.DeleteStream(r.ctx, r.sc.Stream); err != nil { // the lanes' subjects overlap it
		t.Fatal(err)
	}
	r.sc = r.sc.WithLanes([]bus.Lane{{Name: "orders", Collections: []string{"orders"}}})
	if err := bus.Ensure(r.ctx, r.js, r.sc); err != nil {
		t.Fatal(err)
	}
	tl := r.tailerWith("a", nil, nil, func(c *tailer.Config) { c.LayoutCheck = rigInterval })
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	r.insert(5, 64)
	eventually(t, 20*time.Second, "five events in the lane stream", func() bool {
		st, err := r.js.Stream(r.ctx, r.sc.LaneStream("orders"))
		if err != nil {
			return false
		}
		info, err := st.Info(r.ctx)
		return err == nil && info.State.Msgs == 5
	})
	// Nothing consumes them: another layout may not be declared yet.
	next := r.sc.WithLanes([]bus.Lane{
		{Name: "orders_0", Collections: []string{"orders"}, Group: "orders", Part: 0, Parts: 2},
		{Name: "orders_1", Collections: []string{"orders"}, Group: "orders", Part: 1, Parts: 2},
	})
	if err := bus.Ensure(r.ctx, r.js, next); !errors.Is(err, bus.ErrLaneLayout) {
		t.Fatalf("another layout over five unapplied events: err %v, want ErrLaneLayout", err)
	}
	select {
	case err := <-done:
		t.Fatalf("the tailer stopped although the layout did not change: %v", err)
	default:
	}
	// Drained (here: purged, as if applied and trimmed): the other
	// layout is declared, and the running tailer stops.
	st, err := r.js.Stream(r.ctx, r.sc.LaneStream("orders"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(r.ctx); err != nil {
		t.Fatal(err)
	}
	if err := bus.Ensure(r.ctx, r.js, next); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var le *bus.LaneLayoutError
		if !errors.As(err, &le) || tailer.Classify(err) != fault.Fatal {
			t.Fatalf("tailer stopped with %v, want a fatal *bus.LaneLayoutError", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the tailer kept running with a layout the streams no longer carry")
	}
}
