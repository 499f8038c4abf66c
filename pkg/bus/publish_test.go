package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/event"
)

// pubStreams is a change stream with lanes "users" and "ledger", or
// without lanes.
func pubStreams(laned bool) bus.StreamsConfig {
	c := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: time.Minute, MaxAge: 24 * time.Hour, MaxBytes: -1, CheckpointBucket: "ckpt"}
	if laned {
		c = c.WithLanes([]bus.Lane{
			{Name: "users", Collections: []string{"users"}},
			{Name: "ledger", Collections: []string{"payments"}},
		})
	}
	return c
}

// docEvent is a snapshot event of document n of coll, padded with pad
// bytes; txn places it in a transaction.
func docEvent(t *testing.T, coll string, n, pad int, txn *event.Txn) *event.Event {
	t.Helper()
	raw, err := bson.Marshal(bson.D{{Key: "_id", Value: int32(n)}, {Key: "pad", Value: strings.Repeat("x", pad)}})
	if err != nil {
		t.Fatal(err)
	}
	doc := bson.Raw(raw)
	ev := event.FromDocument(event.OpSnapshot, "escrow", coll, doc.Lookup("_id"), doc, event.ClusterTime{T: 1_700_000_000, I: 1})
	ev.Source.Txn = txn
	return ev
}

// stored reads the message at seq of stream.
func stored(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("stream %s sequence %d: %v", stream, seq, err)
	}
	return m
}

// TestPublisherMessages: every event is stored in its lane's stream (a
// transaction whole in its first event's lane) with the lane's subject,
// Nats-Msg-Id = the event id, the envelope's Content-Type, the
// publisher's own header (key canonicalised), and the envelope as body.
func TestPublisherMessages(t *testing.T) {
	ctx := context.Background()
	for _, laned := range []bool{false, true} {
		t.Run(fmt.Sprintf("lanes=%v", laned), func(t *testing.T) {
			_, js := bustest.Start(t)
			c := pubStreams(laned)
			if err := bus.Ensure(ctx, js, c); err != nil {
				t.Fatal(err)
			}
			txn := func(ix int) *event.Txn { return &event.Txn{LSID: "aa", Number: 1, Index: ix} }
			evs := []*event.Event{
				docEvent(t, "users", 1, 10, nil),
				docEvent(t, "payments", 2, 10, nil),
				docEvent(t, "payments", 3, 10, txn(0)),
				docEvent(t, "users", 4, 10, txn(1)), // in the transaction's lane: ledger
			}
			type want struct{ stream, subject string }
			wants := []want{{"CDC", "cdc.escrow.users"}, {"CDC", "cdc.escrow.payments"}, {"CDC", "cdc.escrow.payments"}, {"CDC", "cdc.escrow.users"}}
			if laned {
				wants = []want{{"CDC_users", "cdc.users.escrow.users"}, {"CDC_ledger", "cdc.ledger.escrow.payments"},
					{"CDC_ledger", "cdc.ledger.escrow.payments"}, {"CDC_ledger", "cdc.ledger.escrow.users"}}
			}
			p := bus.NewPublisher(js, c, bus.WithHeader("cdc-tailer", "host:1:abc"))
			res, err := p.PublishBatch(ctx, evs)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			if res.Stored != len(evs) || res.Duplicates != 0 {
				t.Fatalf("published %+v, want %d stored and no duplicates", res, len(evs))
			}
			next := map[string]uint64{}
			for i, ev := range evs {
				w := wants[i]
				next[w.stream]++
				m := stored(t, ctx, js, w.stream, next[w.stream])
				if m.Subject != w.subject {
					t.Fatalf("event %d (%s): subject %s in %s, want %s", i, ev.ID, m.Subject, w.stream, w.subject)
				}
				for k, v := range map[string]string{jetstream.MsgIDHeader: ev.ID, "Content-Type": event.ContentType, "Cdc-Tailer": "host:1:abc"} {
					if got := m.Header.Get(k); got != v {
						t.Fatalf("event %d: header %s = %q, want %q (headers %v)", i, k, got, v, m.Header)
					}
				}
				back, err := event.Unmarshal(m.Data)
				if err != nil || back.ID != ev.ID {
					t.Fatalf("event %d: body decodes to %v (%v), want event %s", i, back, err, ev.ID)
				}
			}
			// Prepare says where a message goes without sending it.
			o, err := bus.NewPublisher(js, c).Prepare(evs[1])
			if err != nil || o.Stream != wants[1].stream || o.Msg.Subject != wants[1].subject || o.Oversize {
				t.Fatalf("Prepare: stream %q subject %q oversize %v (%v), want %s %s", o.Stream, o.Msg.Subject, o.Oversize, err, wants[1].stream, wants[1].subject)
			}
			if got := o.Msg.Header.Get("Cdc-Tailer"); got != "" {
				t.Fatalf("a publisher without WithHeader stamps Cdc-Tailer %q", got)
			}
			// The key is stored canonical: readers that index the map
			// (as the tailer's tests do) find it.
			o, err = p.Prepare(evs[0])
			if err != nil || o.Msg.Header["Cdc-Tailer"] == nil {
				t.Fatalf("Prepare with WithHeader(\"cdc-tailer\"): headers %v (%v), want the key Cdc-Tailer", o.Msg.Header, err)
			}
		})
	}
}

// TestPublisherDedup: publishing the same events again within the dedup
// window stores nothing (all duplicates); a batch that overlaps stores
// only the new ones. The asynchronous path (PublishAsync, the tailer's)
// is deduplicated the same way.
func TestPublisherDedup(t *testing.T) {
	ctx := context.Background()
	_, js := bustest.Start(t)
	c := pubStreams(false)
	if err := bus.Ensure(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	p := bus.NewPublisher(js, c)
	var evs []*event.Event
	for i := range 6 {
		evs = append(evs, docEvent(t, "users", i, 10, nil))
	}
	for _, step := range []struct {
		name               string
		evs                []*event.Event
		stored, duplicates int
	}{
		{"first", evs[:4], 4, 0},
		{"again", evs[:4], 0, 4},
		{"overlapping", evs[2:], 2, 2},
	} {
		res, err := p.PublishBatch(ctx, step.evs)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if res.Stored != step.stored || res.Duplicates != step.duplicates {
			t.Fatalf("%s: stored %d, duplicates %d, want %d and %d", step.name, res.Stored, res.Duplicates, step.stored, step.duplicates)
		}
	}
	o, err := p.Prepare(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.PublishAsync(o)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ack := <-f.Ok():
		if !ack.Duplicate {
			t.Fatalf("async republish of %s stored at %d, want a duplicate", evs[0].ID, ack.Sequence)
		}
	case err := <-f.Err():
		t.Fatalf("async republish refused: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no acknowledgement within 10s")
	}
	if st := streamState(t, js, "CDC"); st.Msgs != 6 {
		t.Fatalf("stream holds %d messages, want 6", st.Msgs)
	}
}

// TestPublisherLargeEvent: an envelope over max_payload is published as
// its pointer, which keeps the publisher's header and decodes to the
// whole envelope; Prepare marks it oversize, and PublishAsync refuses it
// until StoreLarge made it a pointer.
func TestPublisherLargeEvent(t *testing.T) {
	ctx := context.Background()
	_, js := bustest.StartMaxPayload(t, 64<<10)
	c := pubStreams(false)
	if err := bus.Ensure(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	p := bus.NewPublisher(js, c, bus.WithHeader("Cdc-Tailer", "t1"))
	ev := docEvent(t, "users", 1, 200<<10, nil)
	o, err := p.Prepare(ev)
	if err != nil || !o.Oversize {
		t.Fatalf("Prepare of a 200 KiB envelope: oversize %v (%v), want oversize", o.Oversize, err)
	}
	if _, err := p.PublishAsync(o); err == nil {
		t.Fatal("an oversize message was published without StoreLarge")
	}
	if _, err := p.PublishBatch(ctx, []*event.Event{ev}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	m := stored(t, ctx, js, "CDC", 1)
	if m.Header.Get(bus.HeaderLargeObject) == "" || m.Header.Get("Cdc-Tailer") != "t1" || m.Header.Get(jetstream.MsgIDHeader) != ev.ID {
		t.Fatalf("stored message headers %v: want a pointer with Cdc-Tailer t1 and Nats-Msg-Id %s", m.Header, ev.ID)
	}
	data, err := bus.EventBytes(ctx, js, m.Header, m.Data)
	if err != nil {
		t.Fatalf("resolve the pointer: %v", err)
	}
	back, err := event.Unmarshal(data)
	if err != nil || back.ID != ev.ID || len(back.Doc) != len(ev.Doc) {
		t.Fatalf("pointer resolves to %v (%v), want the whole event %s", back, err, ev.ID)
	}
}

// TestPublisherFullStreamIsTyped: a full stream's refusal comes back as a
// *bus.StreamFullError naming the stream that refused (the lane's), from
// PublishBatch and from Refused on an async future (the tailer's path).
func TestPublisherFullStreamIsTyped(t *testing.T) {
	ctx := context.Background()
	for _, laned := range []bool{false, true} {
		t.Run(fmt.Sprintf("lanes=%v", laned), func(t *testing.T) {
			_, js := bustest.Start(t)
			c := pubStreams(laned)
			c.MaxBytes = 16 << 10
			if err := bus.Ensure(ctx, js, c); err != nil {
				t.Fatal(err)
			}
			wantStream := c.LaneStream(c.LanesOf("users")[0])
			p := bus.NewPublisher(js, c)
			p.Attempts = 1
			var err error
			n := 0
			for ; n < 1000 && err == nil; n++ {
				_, err = p.PublishBatch(ctx, []*event.Event{docEvent(t, "users", n, 500, nil)})
			}
			var full *bus.StreamFullError
			if !errors.As(err, &full) || !errors.Is(err, bus.ErrStreamFull) {
				t.Fatalf("refusal after %d batches is %T %v, want *bus.StreamFullError", n, err, err)
			}
			if full.Stream != wantStream || full.MaxBytes != 16<<10 {
				t.Fatalf("refusal %+v: want stream %s, max_bytes 16384", full, wantStream)
			}
			var api *jetstream.APIError
			if !errors.As(err, &api) || api.ErrorCode != bus.ErrCodeStreamStoreFailed {
				t.Fatalf("the server's error is not reachable: %v", err)
			}

			o, perr := p.Prepare(docEvent(t, "users", n+1, 500, nil))
			if perr != nil {
				t.Fatal(perr)
			}
			f, perr := p.PublishAsync(o)
			if perr != nil {
				t.Fatal(perr)
			}
			select {
			case <-f.Ok():
				t.Fatal("a full stream stored an async publish")
			case ferr := <-f.Err():
				if rerr := p.Refused(ctx, f.Msg(), ferr); !errors.As(rerr, &full) || full.Stream != wantStream {
					t.Fatalf("Refused: %T %v, want *bus.StreamFullError of %s", rerr, rerr, wantStream)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no answer within 10s")
			}
		})
	}
}

// TestPublisherNoStreamIsTyped: a publish no expected stream stores (the
// stream not declared, or another stream capturing the subject) comes
// back as a *bus.NoStreamError (bus.ErrNoStream) naming the stream
// expected, with the client's or server's answer reachable.
func TestPublisherNoStreamIsTyped(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		declare func(t *testing.T, js jetstream.JetStream)
		answer  func(err error) bool
	}{
		{"not declared", func(*testing.T, jetstream.JetStream) {},
			func(err error) bool { return errors.Is(err, jetstream.ErrNoStreamResponse) }},
		{"another stream captures the subject", func(t *testing.T, js jetstream.JetStream) {
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"cdc.>"}}); err != nil {
				t.Fatal(err)
			}
		}, func(err error) bool {
			var api *jetstream.APIError
			return errors.As(err, &api) && api.ErrorCode == bus.ErrCodeStreamNotMatch
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, js := bustest.Start(t)
			tc.declare(t, js)
			p := bus.NewPublisher(js, pubStreams(false))
			p.Attempts = 1
			_, err := p.PublishBatch(ctx, []*event.Event{docEvent(t, "users", 1, 10, nil)})
			var ns *bus.NoStreamError
			if !errors.As(err, &ns) || !errors.Is(err, bus.ErrNoStream) {
				t.Fatalf("publish: %T %v, want *bus.NoStreamError", err, err)
			}
			if ns.Stream != "CDC" || ns.Subject != "cdc.escrow.users" || !tc.answer(err) {
				t.Fatalf("refusal %+v (%v): want stream CDC, subject cdc.escrow.users, the answer reachable", ns, err)
			}
		})
	}
}

// TestPublisherBatchCancelled: a cancelled context ends PublishBatch with
// ctx.Err(), not a publish error.
func TestPublisherBatchCancelled(t *testing.T) {
	_, js := bustest.Start(t)
	p := bus.NewPublisher(js, pubStreams(false)) // nothing declared: every attempt fails
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.PublishBatch(ctx, []*event.Event{docEvent(t, "users", 1, 10, nil)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled publish: %v, want context.Canceled", err)
	}
}
