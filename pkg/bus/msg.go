package bus

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"sync"

	"github.com/amanat/cdc/pkg/event"
)

// headerRoom is what a message's subject and headers may take of
// max_payload.
const headerRoom = 1024

// EventMsg is the one way an event becomes a JetStream message (tailer,
// snapshot, replay): the envelope, Nats-Msg-Id = the event id (dedup),
// Content-Type naming the envelope version. maxPayload is the server's
// limit (Conn.MaxPayload; 0: unknown). An envelope too large for it is
// returned whole with oversize set: such a message cannot be published as
// is (the client refuses it), it must go through StoreLarge, which puts
// the envelope in the large-event object store and returns the small
// pointer message to publish instead (EncodeEventMsg does both). Readers
// decode every change-stream message through EventBytes/DecodeEventMsg.
//
// With lanes configured, EventMsg puts ev in its collection's lane; a
// publisher of transactions uses a Publisher (publish.go), which routes
// with a LaneRouter and builds the message with LaneEventMsg's code.
func EventMsg(c StreamsConfig, ev *event.Event, maxPayload int64) (msg *nats.Msg, oversize bool, err error) {
	lane, err := c.LaneOf(ev)
	if err != nil {
		return nil, false, err
	}
	return LaneEventMsg(c, lane, ev, maxPayload)
}

// LaneEventMsg is EventMsg with the lane given (lanes.go: LaneRouter).
func LaneEventMsg(c StreamsConfig, lane string, ev *event.Event, maxPayload int64) (msg *nats.Msg, oversize bool, err error) {
	return laneEventMsg(c, lane, ev, maxPayload, nil)
}

// laneEventMsg is LaneEventMsg with extra headers (canonical keys; a
// Publisher's WithHeader) added before the event's own. Their value
// slices are shared by every message: nothing modifies a header value in
// place (nats.Header.Set replaces the slice).
func laneEventMsg(c StreamsConfig, lane string, ev *event.Event, maxPayload int64, extra nats.Header) (msg *nats.Msg, oversize bool, err error) {
	data, err := ev.Marshal()
	if err != nil {
		return nil, false, err
	}
	oversize = maxPayload > 0 && int64(len(data)) > maxPayload-headerRoom
	// Header keys are already canonical: no Set (which canonicalises
	// them again on every event).
	h := make(nats.Header, 2+len(extra))
	for k, v := range extra {
		h[k] = v
	}
	h[jetstream.MsgIDHeader] = []string{ev.ID}
	h["Content-Type"] = []string{event.ContentType}
	msg = &nats.Msg{Subject: subject(c, lane, ev.Source.DB, ev.Source.Coll), Data: data, Header: h}
	return msg, oversize, nil
}

// subjects caches escaped subjects: a few collections, millions of events.
var subjects sync.Map // [4]string{prefix, lane, db, coll} -> string

func subject(c StreamsConfig, lane, db, coll string) string {
	k := [4]string{c.SubjectPrefix, lane, db, coll}
	if s, ok := subjects.Load(k); ok {
		return s.(string)
	}
	s := c.LaneSubject(lane, db, coll)
	subjects.Store(k, s)
	return s
}
