package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
)

// item is one event on its way to Postgres.
type item struct {
	// msg is acknowledged after the commit; nil for replays that do not
	// come from the live consumer.
	msg jetstream.Msg
	seq uint64
	raw []byte
	ev  *event.Event
	// mapping is nil when reject is set before a mapping was found.
	mapping *transform.Mapping
	docKey  string
	// row is the transformed document for upserts; nil for deletes.
	row *transform.Row
	// noop marks an update whose document no longer existed when the
	// change stream looked it up; the later delete event removes the row.
	noop bool
	// reject is set when the event is poison before it reaches Postgres.
	reject error
	// deferred marks an item read back from cdc.deferred_events: resolving
	// it removes its row there.
	deferred bool
	// attempts counts earlier tries of a deferred item.
	attempts int
}

// unit is what commits or fails as a whole: one event, or every event of
// one Mongo transaction.
type unit struct {
	items []*item
	txnID string
	// firstSeen is when the unit was first offered to Apply (policy wait
	// counts from it).
	firstSeen time.Time
	// spilled: parts of this transaction are in cdc.deferred_events and
	// must be loaded before it applies.
	spilled bool
}

func (u *unit) rejected() error {
	for _, it := range u.items {
		if it.reject != nil {
			return it.reject
		}
	}
	return nil
}

// decodeMsg turns a change-stream message (headers h, body) into an
// item, reading a large event's envelope from the object store
// (bus.EventBytes, the one decoding path of every reader). A large event
// whose object is missing or does not match its pointer becomes an item
// from the pointer's body (the event without its documents) rejected with
// that reason, so it is dead-lettered; an unreachable object store is
// returned as the error (retryable: nothing is applied or acknowledged,
// the sink reads again from its position).
func decodeMsg(ctx context.Context, js jetstream.JetStream, set *transform.Set, seq uint64, h nats.Header, body []byte) (*item, error) {
	data, err := bus.EventBytes(ctx, js, h, body)
	switch {
	case err == nil:
		return decode(set, seq, data), nil
	case bus.IsLargePoison(err):
		return decodeUnresolved(set, seq, body, err), nil
	default:
		return nil, fmt.Errorf("stream sequence %d: %w", seq, err)
	}
}

// decodeUnresolved is the item of a large event whose envelope could not
// be read (lerr, poison): decoded from the pointer's body and rejected
// with lerr.
func decodeUnresolved(set *transform.Set, seq uint64, body []byte, lerr error) *item {
	it := decode(set, seq, body)
	it.reject = fmt.Errorf("%s document %s: %w", it.ev.Source.Coll, it.docKey, lerr)
	return it
}

// decode turns a stream message into an item; problems with the event
// itself are recorded as reject so the event is dead-lettered, never lost.
func decode(set *transform.Set, seq uint64, data []byte) *item {
	it := &item{seq: seq, raw: data}
	ev, err := event.Unmarshal(data)
	if err != nil {
		it.reject = err
		it.ev = &event.Event{ID: fmt.Sprintf("seq:%d", seq), Source: event.Source{Coll: "?"}}
		return it
	}
	it.ev = ev
	if it.docKey, err = ev.DocKey(); err != nil {
		it.reject = err
		return it
	}
	m, ok := set.Get(ev.Source.Coll)
	if !ok {
		it.reject = &transform.Rejection{Collection: ev.Source.Coll, Reason: "no transform maps this collection"}
		return it
	}
	it.mapping = m
	if ev.Oversize > 0 {
		it.reject = &transform.Rejection{Collection: ev.Source.Coll, Reason: fmt.Sprintf(
			"the change of document %s was %d bytes, more than the bus's max_payload, and arrived without its document "+
				"(a pointer whose large-event object was not read, or a publisher without large-event support): "+
				"replay it by id (cdc replay ids)", it.docKey, ev.Oversize)}
		return it
	}
	if m.AppendOnly && ev.Op != event.OpInsert && ev.Op != event.OpSnapshot && ev.Op != event.OpRefresh {
		it.reject = &violationError{msg: fmt.Sprintf(
			"append-only violation: %s of document %s in an append-only collection (rows are only ever inserted)", ev.Op, it.docKey)}
		return it
	}
	if ev.Op == event.OpDelete {
		return it
	}
	doc, err := ev.Document()
	if err != nil {
		it.reject = err
		return it
	}
	if doc == nil {
		it.noop = true // update of a document deleted since
		return it
	}
	if it.row, err = m.Row(doc); err != nil {
		it.reject = err
	}
	return it
}
