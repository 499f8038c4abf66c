package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
)

// Publisher publishes envelopes to the change stream the way the tailer
// does: subject bus.StreamsConfig.Subject(db, coll), Nats-Msg-Id set to the
// event id (so JetStream's dedup window drops a copy), the stream name
// expected. It is not safe for concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	streams bus.StreamsConfig
	// Attempts is how many times PublishBatch tries a batch whose
	// acknowledgements failed (default 5). Re-publishing is safe: the
	// ids are the same.
	Attempts int
	// lanes routes events to their sink lane (bus.LaneRouter): events
	// are published in change-stream order, a transaction whole to the
	// lane of its first event, as the tailer does.
	lanes *bus.LaneRouter
}

// NewPublisher returns a Publisher. It does no I/O.
func NewPublisher(js jetstream.JetStream, streams bus.StreamsConfig) *Publisher {
	return &Publisher{js: js, streams: streams, Attempts: 5, lanes: bus.NewLaneRouter(streams)}
}

// Published counts the acknowledgements of a batch.
type Published struct {
	// Stored were appended to the stream.
	Stored int
	// Duplicates were already in the stream (same id within the dedup
	// window): JetStream acknowledged them without storing a copy.
	Duplicates int
	// LastSeq is the highest stream sequence acknowledged.
	LastSeq uint64
}

// Msg builds the message of ev in the tailer's format
// (bus.EncodeEventMsg): an envelope over max_payload is put in the
// large-event object store and the message is its pointer.
func (p *Publisher) Msg(ctx context.Context, ev *event.Event) (*nats.Msg, error) {
	lane, err := p.lanes.Route(ev)
	if err != nil {
		return nil, err
	}
	return bus.EncodeLaneEventMsg(ctx, p.js, p.streams, lane, ev)
}

// PublishBatch publishes evs asynchronously and waits until JetStream
// acknowledged every one of them. A failed acknowledgement re-publishes
// the whole batch (same ids, so nothing is stored twice) up to Attempts
// times; the last error is returned. Cancelling ctx abandons the wait.
func (p *Publisher) PublishBatch(ctx context.Context, evs []*event.Event) (Published, error) {
	msgs := make([]*nats.Msg, len(evs))
	for i, ev := range evs {
		m, err := p.Msg(ctx, ev)
		if err != nil {
			return Published{}, err
		}
		msgs[i] = m
	}
	attempts := max(p.Attempts, 1)
	var err error
	for a := 0; a < attempts; a++ {
		var res Published
		if res, err = p.publishOnce(ctx, msgs); err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return Published{}, ctx.Err()
		}
		select {
		case <-ctx.Done():
			return Published{}, ctx.Err()
		case <-time.After(time.Duration(200*(a+1)) * time.Millisecond):
		}
	}
	return Published{}, fmt.Errorf("publish %d events: %w", len(evs), err)
}

func (p *Publisher) publishOnce(ctx context.Context, msgs []*nats.Msg) (Published, error) {
	var res Published
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		// The message is re-sent on retry: publish a copy, the client
		// may keep a reference to the one it sent.
		cp := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: m.Header}
		f, err := p.js.PublishMsgAsync(cp, jetstream.WithExpectStream(p.streams.StreamOf(m.Subject)))
		if err != nil {
			return res, fmt.Errorf("publish %s: %w", m.Header.Get(jetstream.MsgIDHeader), err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				res.Duplicates++
			} else {
				res.Stored++
			}
			res.LastSeq = max(res.LastSeq, ack.Sequence)
		case err := <-f.Err():
			return res, fmt.Errorf("publish %s not acknowledged: %w", f.Msg().Header.Get(jetstream.MsgIDHeader), err)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	return res, nil
}
