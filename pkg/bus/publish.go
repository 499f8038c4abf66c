package bus

// The publisher: the one place that decides what a published change event
// looks like (subject and lane, Nats-Msg-Id, Content-Type, the publisher's
// own headers, the envelope or, over max_payload, its large-event pointer)
// and which stream must store it, for every publisher of change events:
// the tailer, snapshot and replay.
//
// Two ways to send, one message format:
//
//   - PublishBatch (snapshot, replay) publishes a batch asynchronously and
//     waits for every acknowledgement, re-publishing the batch on a failed
//     one (same ids: JetStream's dedup window drops what it already has).
//   - Prepare, StoreLarge and PublishAsync (the tailer) send one event at
//     a time and hand the acknowledgement future back: the tailer keeps
//     its own in-flight window (MaxInFlight, MaxInFlightBytes) and waits on
//     the futures in change-stream order, because the window is also its
//     checkpoint queue (resume tokens without an event sit between the
//     events, and a token becomes the checkpoint only once every publish
//     before it is acknowledged). Refused turns a failed future into the
//     publisher's typed errors, the same ones PublishBatch returns.

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/event"
)

// ErrCodeStreamNotMatch is nats-server's JSStreamNotMatchErr (JetStream API
// error code 10060): the stream that captured a publish is not the one the
// publisher expected (jetstream.WithExpectStream).
const ErrCodeStreamNotMatch jetstream.ErrorCode = 10060

// ErrNoStream means no change stream stored a published event: nothing
// captures its subject (the stream, or its lane's, is not declared: the
// replicator declares them at start, bus.Ensure), or a stream other than
// the expected one does (a lane layout the streams were not declared
// with). Nothing was stored. Retrying helps only once the streams are
// declared.
var ErrNoStream = errors.New("no change stream stores the event's subject")

// NoStreamError is a publish no expected stream stored: the stream the
// publisher expected, the message's subject, and the client's or server's
// answer. errors.Is(err, ErrNoStream) holds; the answer
// (jetstream.ErrNoStreamResponse, or a *jetstream.APIError of code
// ErrCodeStreamNotMatch) stays reachable.
type NoStreamError struct {
	Stream  string
	Subject string
	Err     error
}

func (e *NoStreamError) Error() string {
	return fmt.Sprintf("%v: stream %s (subject %s): %v", ErrNoStream, e.Stream, e.Subject, e.Err)
}

// Unwrap returns ErrNoStream and the answer.
func (e *NoStreamError) Unwrap() []error { return []error{ErrNoStream, e.Err} }

// isNoStream reports whether err says no expected stream captured a
// publish: no responder (the client's ErrNoStreamResponse), or the
// server's code 10060. By sentinel and code, never by text.
func isNoStream(err error) bool {
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == ErrCodeStreamNotMatch
}

// DefaultPublishAttempts is how many times PublishBatch tries a batch
// (Publisher.Attempts).
const DefaultPublishAttempts = 5

// Publisher publishes change events (see the file comment). It routes
// events to their lanes in the order it is given them (LaneRouter: a
// transaction whole to the lane of its first event), so it is not safe for
// concurrent use, and a publisher that restarts from a position (the
// tailer's session) takes a new one. NewPublisher does no I/O.
type Publisher struct {
	js      jetstream.JetStream
	streams StreamsConfig
	lanes   *LaneRouter
	// header is stamped on every message (WithHeader), canonical keys.
	header nats.Header
	// laneStreams caches LaneStream per lane (one string per publish
	// otherwise).
	laneStreams map[string]string
	// Attempts is how many times PublishBatch tries a batch whose
	// acknowledgements failed (NewPublisher sets DefaultPublishAttempts;
	// less than 1 is 1). Re-publishing is safe: the ids are the same.
	Attempts int
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// WithHeader stamps header key with value on every message the publisher
// builds, pointer messages of large events included (the tailer names
// itself in Cdc-Tailer). key is canonicalised once, here. The event
// headers (Nats-Msg-Id, Content-Type, Cdc-Large-*) are the publisher's:
// a WithHeader of one of them is overwritten.
func WithHeader(key, value string) PublisherOption {
	return func(p *Publisher) {
		if p.header == nil {
			p.header = nats.Header{}
		}
		p.header[textproto.CanonicalMIMEHeaderKey(key)] = []string{value}
	}
}

// NewPublisher returns a Publisher for the change streams of streams.
func NewPublisher(js jetstream.JetStream, streams StreamsConfig, opts ...PublisherOption) *Publisher {
	p := &Publisher{js: js, streams: streams, lanes: NewLaneRouter(streams), Attempts: DefaultPublishAttempts,
		laneStreams: map[string]string{}}
	for _, l := range streams.LaneNames() {
		p.laneStreams[l] = streams.LaneStream(l)
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Outgoing is one event's message as the publisher built it.
type Outgoing struct {
	// Msg is what goes on the wire.
	Msg *nats.Msg
	// Stream is the change stream that must store it (its lane's): the
	// publish expects it (jetstream.WithExpectStream).
	Stream string
	// Oversize: Msg holds the whole envelope, over the connection's
	// max_payload. It cannot be published as is: StoreLarge first.
	Oversize bool
	// ev is the event, for StoreLarge.
	ev *event.Event
}

// Prepare routes ev to its lane and builds its message (no I/O): subject
// of the lane, the envelope as body, Nats-Msg-Id = the event id (dedup),
// Content-Type naming the envelope version, the WithHeader headers. The
// errors (a collection in no lane, an envelope that does not encode) are
// the event's: publishing it again gives the same error.
func (p *Publisher) Prepare(ev *event.Event) (Outgoing, error) {
	lane, err := p.lanes.Route(ev)
	if err != nil {
		return Outgoing{}, err
	}
	msg, oversize, err := laneEventMsg(p.streams, lane, ev, p.js.Conn().MaxPayload(), p.header)
	if err != nil {
		return Outgoing{}, err
	}
	stream, ok := p.laneStreams[lane]
	if !ok {
		stream = p.streams.LaneStream(lane)
	}
	return Outgoing{Msg: msg, Stream: stream, Oversize: oversize, ev: ev}, nil
}

// StoreLarge puts an oversize message's envelope into the large-event
// object store (bus.StoreLarge: stored when it returns) and makes o's
// message its pointer, headers kept; a message that is not oversize is
// left alone. Errors are *LargeObjectError of kind ErrLargeUnavailable:
// retry.
func (p *Publisher) StoreLarge(ctx context.Context, o *Outgoing) error {
	if !o.Oversize {
		return nil
	}
	msg, err := StoreLarge(ctx, p.js, p.streams, o.ev, o.Msg)
	if err != nil {
		return err
	}
	o.Msg, o.Oversize = msg, false
	return nil
}

// Encode is Prepare followed, for an oversize envelope, by StoreLarge:
// the message it returns can be published.
func (p *Publisher) Encode(ctx context.Context, ev *event.Event) (Outgoing, error) {
	o, err := p.Prepare(ev)
	if err != nil {
		return o, err
	}
	return o, p.StoreLarge(ctx, &o)
}

// errOversize is a programming error: an oversize message published
// without StoreLarge (the client would refuse it anyway).
var errOversize = errors.New("an oversize message must go through StoreLarge before it is published")

// PublishAsync publishes o's message asynchronously, expecting o.Stream,
// and returns the acknowledgement future. The caller waits on it and
// passes a failure to Refused. The client keeps o.Msg until the
// acknowledgement: publish a copy to send the same message again.
func (p *Publisher) PublishAsync(o Outgoing) (jetstream.PubAckFuture, error) {
	if o.Oversize {
		return nil, fmt.Errorf("publish %s: %w", o.Msg.Header.Get(jetstream.MsgIDHeader), errOversize)
	}
	return p.js.PublishMsgAsync(o.Msg, jetstream.WithExpectStream(o.Stream))
}

// Refused classifies err, the failed acknowledgement (or publish) of msg:
// a *NoStreamError when no expected stream captured it, a
// *StreamFullError when its stream is full (ClassifyPublishError, against
// the stream of msg's subject: the lane's), else err unchanged (an ack
// timeout, a lost connection: retry). msg may be nil.
func (p *Publisher) Refused(ctx context.Context, msg *nats.Msg, err error) error {
	stream, subject := p.streams.Stream, ""
	if msg != nil {
		subject = msg.Subject
		stream = p.streams.StreamOf(subject)
	}
	if isNoStream(err) {
		return &NoStreamError{Stream: stream, Subject: subject, Err: err}
	}
	return ClassifyPublishError(ctx, p.js, stream, msg, err)
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

// PublishBatch publishes evs in order, asynchronously, and waits until
// JetStream acknowledged every one of them. A failed acknowledgement
// re-publishes the whole batch (same ids, so nothing is stored twice) up
// to Attempts times; the last error is returned, classified (Refused:
// *NoStreamError, *StreamFullError). Cancelling ctx abandons the wait and
// returns ctx.Err().
func (p *Publisher) PublishBatch(ctx context.Context, evs []*event.Event) (Published, error) {
	outs := make([]Outgoing, len(evs))
	for i, ev := range evs {
		o, err := p.Encode(ctx, ev)
		if err != nil {
			return Published{}, err
		}
		outs[i] = o
	}
	attempts := max(p.Attempts, 1)
	var err error
	for a := 0; a < attempts; a++ {
		var res Published
		if res, err = p.publishOnce(ctx, outs); err == nil {
			return res, nil
		}
		if a == attempts-1 {
			break
		}
		select {
		case <-ctx.Done():
			return Published{}, ctx.Err()
		case <-time.After(time.Duration(200*(a+1)) * time.Millisecond):
		}
	}
	if ctx.Err() != nil {
		return Published{}, ctx.Err()
	}
	return Published{}, fmt.Errorf("publish %d events: %w", len(evs), err)
}

func (p *Publisher) publishOnce(ctx context.Context, outs []Outgoing) (Published, error) {
	var res Published
	futures := make([]jetstream.PubAckFuture, 0, len(outs))
	for _, o := range outs {
		// The message is re-sent on retry: publish a copy, the client
		// may keep a reference to the one it sent.
		cp := o
		cp.Msg = &nats.Msg{Subject: o.Msg.Subject, Data: o.Msg.Data, Header: o.Msg.Header}
		f, err := p.PublishAsync(cp)
		if err != nil {
			return res, fmt.Errorf("publish %s: %w", o.Msg.Header.Get(jetstream.MsgIDHeader), p.Refused(ctx, cp.Msg, err))
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
			return res, fmt.Errorf("publish %s not acknowledged: %w", f.Msg().Header.Get(jetstream.MsgIDHeader), p.Refused(ctx, f.Msg(), err))
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	return res, nil
}
