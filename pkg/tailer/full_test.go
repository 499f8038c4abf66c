package tailer_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/amanat/cdc/pkg/bus"
)

// TestTailerPausesWhileStreamFull: a change stream at its max_bytes
// refuses publishes (discard policy new) and keeps its oldest events; the
// tailer pauses, says so once at error level, retries from its checkpoint
// and resumes as a consumer (playing the sink) applies events and frees
// their space with bus.TrimApplied. Every change reaches the stream,
// nothing is skipped.
func TestTailerPausesWhileStreamFull(t *testing.T) {
	const maxBytes, docs = 32 << 10, 150
	r := newRig(t, maxBytes)
	core, logs := observer.New(zap.InfoLevel)
	rec := &recorder{}
	r.run(r.tailer("tailer-a:1:0001", rec, zap.New(core)))
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("%s %s %v", e.Level, e.Message, e.ContextMap())
			}
			t.Logf("metrics %+v, stream %+v", rec.counts(), r.streamState())
		}
	})
	r.insert(docs, 400)

	eventually(t, 20*time.Second, "a refused publish", func() bool { return rec.counts().fullOn > 0 })
	st := r.streamState()
	if st.FirstSeq != 1 || st.Msgs >= docs || st.Bytes > maxBytes {
		t.Fatalf("full stream: %d..%d, %d msgs, %d bytes (limit %d): want it holding its first events, under the limit",
			st.FirstSeq, st.LastSeq, st.Msgs, st.Bytes, maxBytes)
	}
	msg := "stream CDC is full (max_bytes=32768): publishing paused until the sink frees space or the limit is raised"
	eventually(t, 5*time.Second, "the full-stream error", func() bool { return logs.FilterMessage(msg).FilterLevelExact(zap.ErrorLevel).Len() == 1 })

	// The sink: consume, "apply", then trim what it applied.
	cons, err := r.js.CreateOrUpdateConsumer(r.ctx, r.sc.Stream, jetstream.ConsumerConfig{Durable: "sink", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	var floor uint64
	eventually(t, 60*time.Second, "every change in the stream", func() bool {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if md.Sequence.Stream != floor+1 {
				t.Fatalf("consumed sequence %d after %d: a gap", md.Sequence.Stream, floor)
			}
			floor = md.Sequence.Stream
			ids[m.Headers().Get(jetstream.MsgIDHeader)]++
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := bus.TrimApplied(r.ctx, r.js, r.sc.Stream, floor, 0.8); err != nil {
			t.Fatal(err)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("fetch: %v", err)
		}
		return len(ids) == docs
	})
	for id, n := range ids {
		if n != 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	eventually(t, 10*time.Second, "the checkpoint past every change", func() bool {
		cp, _ := r.checkpoint()
		return cp.Events == docs
	})
	c := rec.counts()
	if c.fullOff == 0 || c.published != docs {
		t.Fatalf("metrics: resumed %d times, published %d (want > 0, %d)", c.fullOff, c.published, docs)
	}
	if logs.FilterMessage(msg).Len() != 1 {
		t.Fatalf("the full-stream error was logged %d times within a minute, want once", logs.FilterMessage(msg).Len())
	}
	if logs.FilterMessage("stream has room again: publishing resumed").Len() == 0 {
		t.Fatal("resuming was not logged")
	}
	t.Logf("%d refusals, %d resumptions, %d retries", c.fullOn, c.fullOff, c.retries)
}
