package bus_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/event"
)

// oneMB is the max_payload of the server these tests run against.
const oneMB = 1 << 20

func largeStreams() bus.StreamsConfig {
	return bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: time.Minute, MaxAge: 24 * time.Hour, MaxBytes: -1, CheckpointBucket: "ckpt"}
}

// bigEvent is an update event whose post- and pre-image carry size bytes
// of random binary data between them (random: nothing can compress it).
func bigEvent(t *testing.T, id string, size int) *event.Event {
	t.Helper()
	blob := func(n int) bson.Raw {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		raw, err := bson.Marshal(bson.D{{Key: "_id", Value: "doc-1"}, {Key: "blob", Value: b}})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	key, _ := bson.Marshal(bson.D{{Key: "_id", Value: "doc-1"}})
	updated, _ := bson.Marshal(bson.D{{Key: "n", Value: int64(7)}})
	return &event.Event{V: event.Version, ID: id, Op: event.OpUpdate,
		Source: event.Source{DB: "escrow", Coll: "users", ClusterTime: event.ClusterTime{T: 1_700_000_000, I: 3}},
		Key:    key, Doc: blob(size / 2), Pre: blob(size / 2),
		Update: &event.UpdateDescription{Updated: updated, Removed: []string{"old"}}}
}

// readOne reads the message at seq through a consumer, as the sink does.
func readOne(t *testing.T, ctx context.Context, js jetstream.JetStream, seq uint64) jetstream.Msg {
	t.Helper()
	s, err := js.Stream(ctx, "CDC")
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("read sequence %d: %v", seq, err)
	}
	return m
}

// TestLargeEventRoundTrip: events of 20 MB and 70 MB on a bus whose
// max_payload is 1 MB travel as one small pointer message each and decode
// byte for byte; republishing one reuses its object and is deduplicated.
func TestLargeEventRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, js := bustest.StartMaxPayload(t, oneMB)
	cfg := largeStreams()
	if err := bus.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		size int
	}{{"20MB", 20 << 20}, {"70MB", 70 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			ev := bigEvent(t, "big-"+tc.name, tc.size)
			want, err := ev.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			msg, err := bus.EncodeEventMsg(ctx, js, cfg, ev)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(msg.Data)) >= nc.MaxPayload()/2 || msg.Header.Get(bus.HeaderLargeObject) == "" {
				t.Fatalf("a %d-byte event was not turned into a pointer: body %d bytes, headers %v", len(want), len(msg.Data), msg.Header)
			}
			if got := msg.Header.Get(jetstream.MsgIDHeader); got != ev.ID {
				t.Fatalf("pointer Nats-Msg-Id %q, want the event id %q", got, ev.ID)
			}
			ack, err := js.PublishMsg(ctx, msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := bus.DecodeEventMsg(ctx, js, readOne(t, ctx, js, ack.Sequence))
			if err != nil {
				t.Fatal(err)
			}
			enc, err := got.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, want) || got.Oversize != 0 {
				t.Fatalf("decoded envelope differs: %d bytes (oversize %d), want %d bytes", len(enc), got.Oversize, len(want))
			}

			// A tailer restart publishes the same event again: same
			// object (not even rewritten), and the pointer is a duplicate.
			obs, err := js.ObjectStore(ctx, cfg.LargeBucket())
			if err != nil {
				t.Fatal(err)
			}
			before, err := obs.GetInfo(ctx, msg.Header.Get(bus.HeaderLargeObject))
			if err != nil {
				t.Fatal(err)
			}
			again, err := bus.EncodeEventMsg(ctx, js, cfg, ev)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := again.Header.Get(bus.HeaderLargeObject), msg.Header.Get(bus.HeaderLargeObject); a != b {
				t.Fatalf("republish named object %q, first publish %q", a, b)
			}
			after, err := obs.GetInfo(ctx, again.Header.Get(bus.HeaderLargeObject))
			if err != nil {
				t.Fatal(err)
			}
			if after.NUID != before.NUID {
				t.Fatalf("republish rewrote the object (chunks %s, were %s): a reader of the first pointer could see it half-written", after.NUID, before.NUID)
			}
			ack2, err := js.PublishMsg(ctx, again)
			if err != nil {
				t.Fatal(err)
			}
			if !ack2.Duplicate || ack2.Sequence != ack.Sequence {
				t.Fatalf("republished pointer stored again (seq %d, duplicate %v), first at %d", ack2.Sequence, ack2.Duplicate, ack.Sequence)
			}
		})
	}
	obs, err := js.ObjectStore(ctx, cfg.LargeBucket())
	if err != nil {
		t.Fatal(err)
	}
	list, err := obs.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("bucket holds %d objects after two events published twice each, want 2", len(list))
	}
	st, err := obs.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() < cfg.MaxAge || st.Replicas() != cfg.Replicas {
		t.Fatalf("bucket TTL %s (stream max_age %s), replicas %d (stream %d): objects must outlive their pointers",
			st.TTL(), cfg.MaxAge, st.Replicas(), cfg.Replicas)
	}
}

// TestLargeEventFailures: a missing object and a mismatching one are
// poison with their own sentinel; an unreachable store is retryable.
func TestLargeEventFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, js := bustest.StartMaxPayload(t, oneMB)
	cfg := largeStreams()
	if err := bus.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	ev := bigEvent(t, "big-fail", 3<<20)
	msg, err := bus.EncodeEventMsg(ctx, js, cfg, ev)
	if err != nil {
		t.Fatal(err)
	}
	name := msg.Header.Get(bus.HeaderLargeObject)
	obs, err := js.ObjectStore(ctx, cfg.LargeBucket())
	if err != nil {
		t.Fatal(err)
	}
	full, err := obs.GetBytes(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), full...)
	flipped[len(flipped)/2] ^= 0xff

	with := func(k, v string) nats.Header {
		h := nats.Header{}
		for hk, hv := range msg.Header {
			h[hk] = hv
		}
		h.Set(k, v)
		return h
	}
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T)
		header nats.Header
		kind   error
	}{
		{"intact", func(*testing.T) {}, msg.Header, nil},
		{"pointer size differs", func(*testing.T) {}, with(bus.HeaderLargeSize, "12"), bus.ErrLargeCorrupt},
		{"pointer digest differs", func(*testing.T) {}, with(bus.HeaderLargeDigest, "SHA-256=AAAA"), bus.ErrLargeCorrupt},
		{"pointer without digest", func(*testing.T) {}, with(bus.HeaderLargeDigest, ""), bus.ErrLargeCorrupt},
		{"object replaced by other bytes", func(t *testing.T) {
			if _, err := obs.PutBytes(ctx, name, flipped); err != nil {
				t.Fatal(err)
			}
		}, msg.Header, bus.ErrLargeCorrupt},
		{"object deleted", func(t *testing.T) {
			if err := obs.Delete(ctx, name); err != nil {
				t.Fatal(err)
			}
		}, msg.Header, bus.ErrLargeMissing},
		{"bucket named by the pointer does not exist", func(*testing.T) {}, with(bus.HeaderLargeBucket, "nope_large"), bus.ErrLargeMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup(t)
			data, err := bus.EventBytes(ctx, js, tc.header, msg.Data)
			if tc.kind == nil {
				if err != nil || !bytes.Equal(data, full) {
					t.Fatalf("intact pointer: %d bytes, %v", len(data), err)
				}
				return
			}
			var le *bus.LargeObjectError
			if !errors.Is(err, tc.kind) || !errors.As(err, &le) || !bus.IsLargePoison(err) {
				t.Fatalf("got %v, want a *LargeObjectError of kind %v (poison)", err, tc.kind)
			}
			if le.EventID != ev.ID || !strings.Contains(err.Error(), "cdc replay ids") {
				t.Fatalf("error does not name the event and the recovery: %v", err)
			}
		})
	}

	// The body of a pointer is the event without its documents: a reader
	// that cannot resolve it still knows what it was.
	slim, err := event.Unmarshal(msg.Data)
	if err != nil || slim.ID != ev.ID || slim.Doc != nil || slim.Oversize != int64(len(full)) {
		t.Fatalf("pointer body: %+v, %v", slim, err)
	}

	nc.Close()
	_, err = bus.EventBytes(ctx, js, msg.Header, msg.Data)
	if !errors.Is(err, bus.ErrLargeUnavailable) || bus.IsLargePoison(err) {
		t.Fatalf("closed connection: %v, want ErrLargeUnavailable (retryable)", err)
	}
	if _, err := bus.StoreLarge(ctx, js, cfg, ev, &nats.Msg{Subject: "cdc.x.y", Data: full, Header: nats.Header{}}); !errors.Is(err, bus.ErrLargeUnavailable) {
		t.Fatalf("store with a closed connection: %v, want ErrLargeUnavailable", err)
	}
}

// TestSmallEventIsNotAPointer: an event under max_payload is published as
// it always was, and EventBytes returns its body unchanged.
func TestSmallEventIsNotAPointer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, js := bustest.StartMaxPayload(t, oneMB)
	cfg := largeStreams()
	if err := bus.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	ev := bigEvent(t, "small", 64<<10)
	msg, err := bus.EncodeEventMsg(ctx, js, cfg, ev)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ev.Marshal()
	if msg.Header.Get(bus.HeaderLargeObject) != "" || !bytes.Equal(msg.Data, want) {
		t.Fatalf("small event became a pointer: %v", msg.Header)
	}
	got, err := bus.EventBytes(ctx, js, msg.Header, msg.Data)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("EventBytes changed a small event: %v", err)
	}
}
