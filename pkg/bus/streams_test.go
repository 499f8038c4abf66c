package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
)

// A full change stream refuses new events instead of discarding the
// oldest, which the sink may not have applied yet.
func TestFullStreamRefusesNewEventsKeepsOld(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, js := bustest.Start(t)
	cfg := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: time.Minute, MaxAge: 24 * time.Hour, MaxBytes: 4096, CheckpointBucket: "ckpt"}
	if err := bus.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	payload := []byte(strings.Repeat("x", 500))
	var refused error
	published := 0
	for i := 0; i < 50 && refused == nil; i++ {
		if _, err := js.Publish(ctx, cfg.Subject("escrow", "users"), payload); err != nil {
			refused = err
		} else {
			published++
		}
	}
	if refused == nil {
		t.Fatal("a 4 KiB stream took 25 KB of events: nothing was refused")
	}
	s, err := js.Stream(ctx, "CDC")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq != 1 || info.State.Msgs != uint64(published) {
		t.Fatalf("stream holds %d messages from %d after %d accepted publishes (refusal: %v): the oldest were discarded",
			info.State.Msgs, info.State.FirstSeq, published, refused)
	}
}
