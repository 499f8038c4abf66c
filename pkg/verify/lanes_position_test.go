package verify

import (
	"testing"

	"github.com/amanat/cdc/pkg/event"
)

// TestAppliedPositionWithLanes: with sink lanes a change is settled only
// once every lane that may carry it has passed it (the oldest lane
// position); a lane without a row yet holds nothing back; without lanes
// the newest dead letter still counts as consumed.
func TestAppliedPositionWithLanes(t *testing.T) {
	w := newWorld(t)
	set := func(consumer string, ct uint32) {
		w.exec(`INSERT INTO cdc.sink_positions (consumer, stream, stream_seq, cluster_time) VALUES ($1, 'CDC', 1, $2)
			ON CONFLICT (consumer) DO UPDATE SET cluster_time = EXCLUDED.cluster_time`, consumer, event.ClusterTime{T: ct, I: 1}.Pack())
	}
	at := func(p *pgSide) uint32 {
		t.Helper()
		v, err := p.appliedPosition(w.ctx, w.pool)
		if err != nil {
			t.Fatal(err)
		}
		return event.Unpack(v).T
	}
	single := &pgSide{pool: w.pool, consumer: "cdc-sink"}
	laned := &pgSide{pool: w.pool, consumer: "cdc-sink", consumers: []string{"cdc-sink_a", "cdc-sink_b", "cdc-sink_c"}}
	set("cdc-sink", 100)
	set("cdc-sink_a", 300)
	set("cdc-sink_b", 200)
	if got := at(single); got != 100 {
		t.Fatalf("without lanes: %d, want 100", got)
	}
	if got := at(laned); got != 200 {
		t.Fatalf("lanes at 300 and 200 (c has no row): %d, want the oldest, 200", got)
	}
	set("cdc-sink_c", 150)
	if got := at(laned); got != 150 {
		t.Fatalf("lane c at 150: %d, want 150", got)
	}
}
