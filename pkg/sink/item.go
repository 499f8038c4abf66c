package sink

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
			"the change of document %s was %d bytes, more than the bus's max_payload: it was published without its document; "+
				"raise max_payload (the embedded server allows 64 MiB) and replay it by id (cdc replay ids)", it.docKey, ev.Oversize)}
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
