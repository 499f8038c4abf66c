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
	"github.com/amanat/cdc/pkg/bus/bustest"
)

// startJS runs an embedded server for one test and returns a JetStream
// context on it.
func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := bustest.Start(t)
	return js
}

func streamState(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamState {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// fill publishes asynchronously (as the tailer does) until the stream
// refuses one, and returns how many it accepted and the classified
// refusal.
func fill(t *testing.T, js jetstream.JetStream, stream, subject string, payload []byte) (int, error) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 10000; i++ {
		msg := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{jetstream.MsgIDHeader: {fmt.Sprintf("fill-%d-%d", time.Now().UnixNano(), i)}}}
		ack, err := js.PublishMsgAsync(msg)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			return i, bus.ClassifyPublishError(ctx, js, stream, ack.Msg(), err)
		case <-time.After(10 * time.Second):
			t.Fatal("no publish ack within 10s")
		}
	}
	t.Fatal("the stream never refused a publish")
	return 0, nil
}

// TestFullStreamRefusalIsTyped: a full size-limited stream refuses with
// the server's code 10077, classified as *StreamFullError (ErrStreamFull)
// with the limits; the API error stays reachable.
func TestFullStreamRefusalIsTyped(t *testing.T) {
	js := startJS(t)
	cfg := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: time.Minute, MaxAge: 24 * time.Hour, MaxBytes: 16 << 10, CheckpointBucket: "ckpt"}
	if err := bus.Ensure(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	n, err := fill(t, js, "CDC", cfg.Subject("escrow", "users"), []byte(strings.Repeat("x", 500)))
	var full *bus.StreamFullError
	if !errors.As(err, &full) || !errors.Is(err, bus.ErrStreamFull) {
		t.Fatalf("refusal after %d publishes is %T %v, want *bus.StreamFullError", n, err, err)
	}
	if full.Stream != "CDC" || full.MaxBytes != 16<<10 || full.Msgs != uint64(n) {
		t.Fatalf("refusal %+v: want stream CDC, max_bytes 16384, %d messages", full, n)
	}
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != bus.ErrCodeStreamStoreFailed {
		t.Fatalf("server error not reachable or not 10077: %v", err)
	}
	// A refusal of another kind is passed through unchanged.
	other := errors.New("nats: timeout")
	if got := bus.ClassifyPublishError(context.Background(), js, "CDC", nil, other); got != other {
		t.Fatalf("non-refusal classified as %v", got)
	}
}

// TestMaxMsgsRefusalIsTyped: the same for a stream limited by count.
func TestMaxMsgsRefusalIsTyped(t *testing.T) {
	js := startJS(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "M", Subjects: []string{"m.>"},
		Storage: jetstream.FileStorage, Discard: jetstream.DiscardNew, MaxMsgs: 10}); err != nil {
		t.Fatal(err)
	}
	n, err := fill(t, js, "M", "m.x", []byte("small"))
	var full *bus.StreamFullError
	if !errors.As(err, &full) || n != 10 || full.MaxMsgs != 10 {
		t.Fatalf("after %d publishes: %v, want a StreamFullError at max_msgs 10", n, err)
	}
}

// TestTrimApplied: a full stream is trimmed only at or below the applied
// floor, towards half its limit; publishes are accepted again afterwards.
func TestTrimApplied(t *testing.T) {
	ctx := context.Background()
	js := startJS(t)
	cfg := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: time.Minute, MaxAge: 24 * time.Hour, MaxBytes: 32 << 10, CheckpointBucket: "ckpt"}
	if err := bus.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	subj := cfg.Subject("escrow", "users")
	payload := []byte(strings.Repeat("y", 400))
	n, err := fill(t, js, "CDC", subj, payload)
	if !errors.Is(err, bus.ErrStreamFull) {
		t.Fatalf("fill: %v", err)
	}
	full := streamState(t, js, "CDC")

	t.Run("invalid high water", func(t *testing.T) {
		for _, hw := range []float64{0, -1, 1.5} {
			if _, err := bus.TrimApplied(ctx, js, "CDC", full.LastSeq, hw); err == nil {
				t.Errorf("high water %v accepted", hw)
			}
		}
	})
	t.Run("below high water nothing is purged", func(t *testing.T) {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "HALF", Subjects: []string{"half.>"},
			Storage: jetstream.FileStorage, Discard: jetstream.DiscardNew, MaxMsgs: 100}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			if _, err := js.Publish(ctx, "half.x", payload); err != nil {
				t.Fatal(err)
			}
		}
		purged, err := bus.TrimApplied(ctx, js, "HALF", 50, 0.8)
		if err != nil || purged != 0 || streamState(t, js, "HALF").Msgs != 50 {
			t.Fatalf("purged %d (%v) from a stream at 50%%", purged, err)
		}
	})
	t.Run("floor before the stream", func(t *testing.T) {
		purged, err := bus.TrimApplied(ctx, js, "CDC", 0, 0.8)
		if err != nil || purged != 0 || streamState(t, js, "CDC").Msgs != uint64(n) {
			t.Fatalf("floor 0 purged %d (%v)", purged, err)
		}
	})
	t.Run("only applied messages go", func(t *testing.T) {
		// The sink applied only the first 5: nothing above them may go,
		// even though the stream stays over half its limit.
		purged, err := bus.TrimApplied(ctx, js, "CDC", 5, 0.8)
		if err != nil {
			t.Fatal(err)
		}
		st := streamState(t, js, "CDC")
		if purged != 5 || st.FirstSeq != 6 || st.LastSeq != full.LastSeq {
			t.Fatalf("floor 5: purged %d, stream %d..%d, want 5 purged and 6..%d", purged, st.FirstSeq, st.LastSeq, full.LastSeq)
		}
	})
	t.Run("applied messages go down to half the limit", func(t *testing.T) {
		before := streamState(t, js, "CDC")
		purged, err := bus.TrimApplied(ctx, js, "CDC", before.LastSeq, 0.8)
		if err != nil {
			t.Fatal(err)
		}
		st := streamState(t, js, "CDC")
		if purged == 0 || purged != before.Msgs-st.Msgs || st.LastSeq != before.LastSeq {
			t.Fatalf("purged %d: stream %d..%d (%d msgs) from %d..%d (%d msgs)", purged, st.FirstSeq, st.LastSeq, st.Msgs,
				before.FirstSeq, before.LastSeq, before.Msgs)
		}
		if st.Bytes > uint64(cfg.MaxBytes)/2 {
			t.Fatalf("stream holds %d bytes after the trim, want at most half of %d", st.Bytes, cfg.MaxBytes)
		}
		if st.Bytes < uint64(cfg.MaxBytes)/4 {
			t.Fatalf("stream holds %d bytes after the trim: purged far more than needed (limit %d)", st.Bytes, cfg.MaxBytes)
		}
		// Room again: the next publishes are accepted.
		for i := 0; i < 5; i++ {
			if _, err := js.Publish(ctx, subj, payload); err != nil {
				t.Fatalf("publish after the trim: %v", err)
			}
		}
	})
}
