package sink

import (
	"fmt"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
)

// boundWaits keeps new waits while they fit in the room left
// (sink.max_waiting), a unit already deferred always (it holds its place),
// and dead-letters the rest whole, saying why; negative room is no bound.
func TestBoundWaits(t *testing.T) {
	waitUnit := func(name string, n int, deferred bool) *unit {
		u := &unit{}
		for i := 0; i < n; i++ {
			u.items = append(u.items, &item{deferred: deferred, ev: &event.Event{ID: fmt.Sprintf("%s%d", name, i), Source: event.Source{Coll: "payments"}}})
		}
		return u
	}
	for _, c := range []struct {
		name         string
		room         int
		units        func() []*unit
		kept, refuse string
	}{
		{name: "no bound", room: -1, units: func() []*unit { return []*unit{waitUnit("a", 3, false), waitUnit("b", 3, false)} }, kept: "a b"},
		{name: "fits exactly", room: 4, units: func() []*unit { return []*unit{waitUnit("a", 1, false), waitUnit("b", 3, false)} }, kept: "a b"},
		{name: "a transaction that does not fit goes whole, a later single still fits", room: 2,
			units: func() []*unit {
				return []*unit{waitUnit("a", 1, false), waitUnit("b", 2, false), waitUnit("c", 1, false)}
			},
			kept: "a c", refuse: "b"},
		{name: "no room: already deferred units keep their place", room: 0,
			units: func() []*unit { return []*unit{waitUnit("a", 2, true), waitUnit("b", 1, false)} }, kept: "a", refuse: "b"},
	} {
		t.Run(c.name, func(t *testing.T) {
			kept, refused := (&Applier{}).boundWaits(c.units(), nil, c.room)
			names := func(us []*unit) string {
				var out []string
				for _, u := range us {
					out = append(out, strings.TrimRight(u.items[0].ev.ID, "0123456789"))
				}
				return strings.Join(out, " ")
			}
			if got := names(kept); got != c.kept {
				t.Fatalf("kept %q, want %q", got, c.kept)
			}
			if got := names(refused); got != c.refuse {
				t.Fatalf("dead-lettered %q, want %q", got, c.refuse)
			}
			for _, u := range refused {
				rej, ok := transform.AsRejection(u.items[0].reject)
				if !ok || !strings.Contains(rej.Reason, "sink.max_waiting") {
					t.Fatalf("refused unit's reason %v does not name sink.max_waiting", u.items[0].reject)
				}
			}
		})
	}
}
