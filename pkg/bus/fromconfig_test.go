package bus_test

import (
	"slices"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
)

// TestStreamsFromConfig: every nats.* key lands in its field, and
// sink.lanes becomes the lanes (a split lane one lane per part); none, or
// a malformed value (Validate refuses it first), is the one default lane.
func TestStreamsFromConfig(t *testing.T) {
	cfg := config.Default()
	cfg.NATS.Stream, cfg.NATS.SubjectPrefix, cfg.NATS.DLQStream = "S", "p", "S_DLQ"
	cfg.NATS.Replicas, cfg.NATS.DedupWindow, cfg.NATS.MaxAge, cfg.NATS.MaxBytes = 3, time.Minute, time.Hour, 1<<20
	cfg.NATS.CheckpointBucket = "cps"
	sc := bus.StreamsFromConfig(&cfg)
	want := bus.StreamsConfig{Stream: "S", SubjectPrefix: "p", DLQStream: "S_DLQ", Replicas: 3, DedupWindow: time.Minute,
		MaxAge: time.Hour, MaxBytes: 1 << 20, CheckpointBucket: "cps"}
	if sc.Stream != want.Stream || sc.SubjectPrefix != want.SubjectPrefix || sc.DLQStream != want.DLQStream ||
		sc.Replicas != want.Replicas || sc.DedupWindow != want.DedupWindow || sc.MaxAge != want.MaxAge ||
		sc.MaxBytes != want.MaxBytes || sc.CheckpointBucket != want.CheckpointBucket {
		t.Fatalf("StreamsFromConfig = %+v, want the fields of %+v", sc, want)
	}

	for _, tc := range []struct {
		name  string
		lanes []string
		names []string // LaneNames
		of    string   // a collection, and its lanes
		ofIn  []string
	}{
		{"no lanes", nil, []string{""}, "users", []string{""}},
		{"two lanes", []string{"ledger:fundsLedger+payments", "rest:users"}, []string{"ledger", "rest"}, "payments", []string{"ledger"}},
		{"a split lane", []string{"core:payments", "rest/2:users"}, []string{"core", "rest_0", "rest_1"}, "users", []string{"rest_0", "rest_1"}},
		{"malformed (Validate refuses it)", []string{"Bad Name:users"}, []string{""}, "users", []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.Sink.Lanes = tc.lanes
			sc := bus.StreamsFromConfig(&c)
			if got := sc.LaneNames(); !slices.Equal(got, tc.names) {
				t.Fatalf("lanes %q, want %q", got, tc.names)
			}
			if got := sc.LanesOf(tc.of); !slices.Equal(got, tc.ofIn) {
				t.Fatalf("lanes of %s %q, want %q", tc.of, got, tc.ofIn)
			}
			var got []string
			for _, l := range bus.ConfiguredLanes(&c) {
				got = append(got, l.Name)
			}
			if want := tc.names; !slices.Equal(got, want) && !(got == nil && slices.Equal(want, []string{""})) {
				t.Fatalf("ConfiguredLanes %q, want %q", got, want)
			}
		})
	}
}
