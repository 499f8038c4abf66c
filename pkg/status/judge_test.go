package status

import (
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/event"
)

// healthyReport is a report with every system reached and nothing wrong.
func healthyReport(now time.Time) *Report {
	applied := clusterTime(event.ClusterTime{T: uint32(now.Add(-time.Hour).Unix()), I: 1})
	created := now.Add(-24 * time.Hour).Truncate(time.Microsecond)
	since := now.Add(-time.Hour)
	return &Report{
		NATS:     NATSStatus{System: System{Reachable: true}, Mode: ModeDaemon},
		Postgres: System{Reachable: true},
		Mongo:    System{Reachable: true},
		Tailer:   TailerStatus{Bucket: "cdc_checkpoints", Key: "tailer.shop", Found: true, ClusterTime: applied},
		Oplog:    OplogStatus{HeadroomSeconds: ptr(86400.0), BehindSeconds: ptr(0.0)},
		Stream:   StreamStatus{Name: "CDC", Messages: 100, FirstSeq: 1, LastSeq: 100, Created: &created},
		Consumer: ConsumerStatus{Name: "cdc-sink", Found: true},
		Sink: SinkStatus{Consumer: "cdc-sink", Found: true, StreamSeq: 100, ClusterTime: applied, Stream: "CDC", StreamCreated: &created,
			Fence: &FenceStatus{Owner: "host:1:abc", Epoch: 2, Since: &since, Held: ptr(true)}},
	}
}

func ptr[T any](v T) *T { return &v }

func TestJudge(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		edit   func(r *Report)
		maxLag time.Duration
		want   []string // a substring of each problem, in order; none: healthy
	}{
		{"healthy", func(*Report) {}, 0, nil},
		{"healthy while events are pending", func(r *Report) { r.Stream.LastSeq = 150 }, 0, nil},
		{"lag over the limit", func(r *Report) { r.Stream.LastSeq = 150 }, time.Minute, []string{"lag: 3600s (50 events) is over the limit 1m0s"}},
		{"lag under the limit", func(r *Report) { r.Stream.LastSeq = 150 }, 2 * time.Hour, nil},
		{"stored state", func(r *Report) { r.NATS.Mode, r.NATS.StoreDir = ModeStoredState, "/d/nats" }, 0, []string{"daemon: not running (its embedded NATS does not answer); this report is the state stored in /d/nats"}},
		{"no checkpoint", func(r *Report) { r.Tailer = TailerStatus{Bucket: "b", Key: "tailer.shop"} }, 0, []string{"tailer checkpoint: none in b/tailer.shop"}},
		{"checkpoint lost", func(r *Report) { r.Oplog.Lost, r.Oplog.Oldest = true, &ClusterTime{T: 9} }, 0, []string{"ChangeStreamHistoryLost (286)"}},
		{"headroom low", func(r *Report) { r.Oplog.Low, r.Oplog.HeadroomSeconds = true, ptr(600.0) }, 0, []string{"oplog: headroom 10m0s is below oplog.headroom_warning 6h0m0s"}},
		{"oplog unreadable", func(r *Report) { r.Oplog.Error = "oplog not readable: not a replica set" }, 0, []string{"oplog: oplog not readable"}},
		{"consumer missing", func(r *Report) { r.Consumer.Found = false }, 0, []string{"consumer: cdc-sink not found on stream CDC"}},
		{"no sink position", func(r *Report) { r.Sink = SinkStatus{Consumer: "cdc-sink"} }, 0, []string{"sink position: none for consumer cdc-sink while the stream holds 100 events"}},
		{"no sink position, empty stream", func(r *Report) {
			r.Sink = SinkStatus{Consumer: "cdc-sink"}
			r.Stream = StreamStatus{Name: "CDC"}
		}, 0, nil},
		{"floor past the stream", func(r *Report) { r.Sink.StreamSeq = 120 }, 0, []string{"applied floor 120 is past the stream's last sequence 100"}},
		{"gap", func(r *Report) { r.Stream.FirstSeq, r.Sink.StreamSeq = 60, 40 }, 0, []string{"no longer holds sequences 41..59"}},
		{"dead letters", func(r *Report) { r.DeadLetters.Open = 3 }, 0, []string{"dead letters: 3 open"}},
		{"a count failed", func(r *Report) {
			r.Collections.Items = []CollectionCount{{Collection: "payments", Error: "count payments: relation does not exist"}}
		}, 0, []string{"collection payments: count payments: relation does not exist"}},
		{"postgres down: one problem, not one per section", func(r *Report) {
			r.Postgres = System{Error: "unreachable: refused"}
			r.Sink = SinkStatus{Consumer: "cdc-sink", Error: "PostgreSQL unreachable"}
			r.DeadLetters.Error = "PostgreSQL unreachable"
			r.Collections.PostgresError = "PostgreSQL unreachable"
		}, 0, []string{"postgres: unreachable: refused"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := healthyReport(now)
			tc.edit(r)
			c := &collector{r: r, opts: Options{MaxLag: tc.maxLag, Now: func() time.Time { return now }},
				tgt: Target{HeadroomWarning: 6 * time.Hour}}
			c.lag()
			c.judge()
			if len(r.Problems) != len(tc.want) {
				t.Fatalf("problems %q, want %q", r.Problems, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(r.Problems[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, r.Problems[i], w)
				}
			}
			if r.Healthy != (len(tc.want) == 0) {
				t.Errorf("healthy %v with problems %q", r.Healthy, r.Problems)
			}
		})
	}
}

func TestLag(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ct := func(ago time.Duration) *ClusterTime {
		return clusterTime(event.ClusterTime{T: uint32(now.Add(-ago).Unix())})
	}
	cases := []struct {
		name        string
		last, floor uint64
		applied     *ClusterTime
		events      uint64
		seconds     float64
	}{
		{"caught up: idle is not lag", 100, 100, ct(time.Hour), 0, 0},
		{"pending", 150, 100, ct(90 * time.Second), 50, 90},
		{"no position yet: all pending, age unknown", 20, 0, nil, 20, 0},
		{"floor past the stream", 10, 20, ct(time.Minute), 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{Stream: StreamStatus{LastSeq: tc.last}, Sink: SinkStatus{StreamSeq: tc.floor, ClusterTime: tc.applied}}
			c := &collector{r: r, opts: Options{Now: func() time.Time { return now }}}
			c.lag()
			if r.Lag.Events != tc.events || r.Lag.Seconds != tc.seconds || r.Lag.Error != "" {
				t.Fatalf("lag %+v, want %d events %v s", r.Lag, tc.events, tc.seconds)
			}
		})
	}
	r := &Report{Stream: StreamStatus{Error: "NATS unreachable"}}
	(&collector{r: r}).lag()
	if r.Lag.Error == "" {
		t.Error("lag without the stream state must be unknown")
	}
}

// TestJudgeIdentityFenceDeferred: the stream identity the position
// records, its fence and the deferred events.
func TestJudgeIdentityFenceDeferred(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	created := now.Add(-24 * time.Hour)
	at := func(t time.Time) *time.Time { return &t }
	const recreated = "sink position: stream re-created: the position belongs to another stream; see `cdc position adopt`"
	cases := []struct {
		name     string
		edit     func(r *Report)
		problems []string // a substring of each, in order
		warnings []string
	}{
		{name: "same stream", edit: func(*Report) {}},
		{name: "same stream: the stream's nanoseconds are not part of its identity", edit: func(r *Report) {
			r.Stream.Created, r.Sink.StreamCreated = at(created.Add(123456789)), at(created.Add(123456000))
		}},
		{name: "same instant in another zone", edit: func(r *Report) {
			r.Stream.Created, r.Sink.StreamCreated = at(created), at(created.In(time.FixedZone("CET", 3600)))
		}},
		{name: "stream re-created", edit: func(r *Report) { r.Stream.Created = at(created.Add(time.Hour)) },
			problems: []string{recreated}},
		{name: "re-created a microsecond later", edit: func(r *Report) { r.Stream.Created = at(r.Sink.StreamCreated.Add(time.Microsecond)) },
			problems: []string{recreated}},
		{name: "re-created: the sequence judgements of the old stream are left out", edit: func(r *Report) {
			r.Stream.Created = at(created.Add(time.Hour))
			r.Stream.FirstSeq, r.Stream.LastSeq, r.Stream.Messages = 1, 5, 5 // the position (100) is past it
		}, problems: []string{recreated}},
		{name: "re-created with another name recorded", edit: func(r *Report) {
			r.Stream.Created, r.Sink.Stream = at(created.Add(time.Hour)), "OLD"
		}, problems: []string{"of stream OLD created"}},
		{name: "identity not recorded yet", edit: func(r *Report) { r.Sink.StreamCreated, r.Sink.Stream = nil, "" }},
		{name: "stream's creation time unknown", edit: func(r *Report) { r.Stream.Created = nil }},
		{name: "no position: nothing to compare", edit: func(r *Report) {
			r.Sink = SinkStatus{Consumer: "cdc-sink"}
			r.Stream = StreamStatus{Name: "CDC", Created: at(created)}
		}},
		{name: "stream unreadable", edit: func(r *Report) { r.Stream = StreamStatus{Name: "CDC", Error: "NATS unreachable"} }},
		{name: "no fence holder recorded (fresh install)", edit: func(r *Report) {
			r.Sink.Fence = &FenceStatus{Held: ptr(false)}
		}},
		{name: "holder recorded, lock free (daemon down)", edit: func(r *Report) { r.Sink.Fence.Held = ptr(false) }},
		{name: "fence lock unreadable", edit: func(r *Report) {
			r.Sink.Fence.Held, r.Sink.Fence.Error = nil, "fence lock of cdc-sink: permission denied"
		}, problems: []string{"sink fence: fence lock of cdc-sink: permission denied"}},
		{name: "deferred, young", edit: func(r *Report) {
			r.Deferred = DeferredStatus{Waiting: 4, Oldest: at(now.Add(-29 * time.Minute)), OldestAgeSeconds: (29 * time.Minute).Seconds()}
		}},
		{name: "deferred, exactly 30m", edit: func(r *Report) {
			r.Deferred = DeferredStatus{Waiting: 4, Oldest: at(now.Add(-30 * time.Minute)), OldestAgeSeconds: (30 * time.Minute).Seconds()}
		}},
		{name: "deferred, older than 30m: a warning, still healthy", edit: func(r *Report) {
			r.Deferred = DeferredStatus{Waiting: 3, TxnParts: 2, Oldest: at(now.Add(-31 * time.Minute)), OldestAgeSeconds: (31 * time.Minute).Seconds()}
		}, warnings: []string{"deferred events: the oldest of 5 (3 waiting for a parent, 2 parts of incomplete transactions) was set aside 31m0s ago, over 30m0s"}},
		{name: "deferred unreadable", edit: func(r *Report) {
			r.Deferred.Error = `deferred events of cdc-sink: ERROR: relation "cdc.deferred_events" does not exist`
		}, problems: []string{"deferred events: deferred events of cdc-sink: ERROR"}},
		{name: "postgres down: one problem", edit: func(r *Report) {
			r.Postgres = System{Error: "unreachable: refused"}
			r.Sink = SinkStatus{Consumer: "cdc-sink", Error: "PostgreSQL unreachable"}
			r.Deferred.Error = "PostgreSQL unreachable"
		}, problems: []string{"postgres: unreachable: refused"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := healthyReport(now)
			r.Stream.Created = at(created.Truncate(time.Microsecond))
			r.Sink.StreamCreated = at(created.Truncate(time.Microsecond))
			tc.edit(r)
			c := &collector{r: r, opts: Options{Now: func() time.Time { return now }}}
			c.lag()
			c.judge()
			check := func(kind string, got, want []string) {
				t.Helper()
				if got == nil {
					t.Errorf("%s nil, want a list (JSON [])", kind)
				}
				if len(got) != len(want) {
					t.Fatalf("%s %q, want %q", kind, got, want)
				}
				for i, w := range want {
					if !strings.Contains(got[i], w) {
						t.Errorf("%s %d = %q, want it to contain %q", kind, i, got[i], w)
					}
				}
			}
			check("problems", r.Problems, tc.problems)
			check("warnings", r.Warnings, tc.warnings)
			if r.Healthy != (len(tc.problems) == 0) {
				t.Errorf("healthy %v with problems %q", r.Healthy, r.Problems)
			}
		})
	}
}
