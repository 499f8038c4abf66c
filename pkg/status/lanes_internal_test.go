package status

import (
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
)

// healthyLanedReport is healthyReport with two lanes, both applied and
// assigned to a live member.
func healthyLanedReport(now time.Time) *Report {
	r := healthyReport(now)
	r.Stream = StreamStatus{Name: "CDC", Error: perLane}
	r.Consumer = ConsumerStatus{Name: "cdc-sink", Error: perLane}
	r.Sink = SinkStatus{Consumer: "cdc-sink", Error: perLane}
	applied := clusterTime(event.ClusterTime{T: uint32(now.Add(-time.Hour).Unix()), I: 1})
	lane := func(name string, last uint64) LaneStatus {
		return LaneStatus{Name: name, Stream: "CDC_" + name, FirstSeq: 1, LastSeq: last, Messages: last, AssignedTo: "host:1:abc",
			Position: SinkStatus{Consumer: "cdc-sink_" + name, Found: true, StreamSeq: last, ClusterTime: applied,
				Fence: &FenceStatus{Owner: "host:1:abc", Epoch: 1, Held: ptr(true)}}}
	}
	r.Lanes = &LanesStatus{MembersBucket: "CDC_sink_members", Members: []LaneMember{{Owner: "host:1:abc", Lanes: []string{"a", "b"}}},
		Items: []LaneStatus{lane("a", 100), lane("b", 50)}}
	return r
}

// TestJudgeLanes: with lanes the default stream's absence is no problem;
// each lane's position is judged like the sink's; a lane no live member
// is assigned warns; the lag sums the lanes'.
func TestJudgeLanes(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		edit     func(r *Report)
		problems []string // a substring of each, in order
		warnings []string
		events   uint64 // the report's lag
	}{
		{name: "healthy"},
		{name: "lag sums the lanes", edit: func(r *Report) {
			r.Lanes.Items[0].LastSeq, r.Lanes.Items[1].LastSeq = 130, 60
		}, events: 40},
		{name: "lane without a position while its stream holds events", edit: func(r *Report) {
			r.Lanes.Items[1].Position = SinkStatus{Consumer: "cdc-sink_b"}
		}, problems: []string{"lane b sink position: none for consumer cdc-sink_b while the stream holds 50 events"}, events: 50},
		{name: "lane gap", edit: func(r *Report) {
			r.Lanes.Items[0].FirstSeq, r.Lanes.Items[0].Messages = 60, 41
			r.Lanes.Items[0].Position.StreamSeq = 40
		}, problems: []string{"lane a sink position: the stream no longer holds sequences 41..59"}, events: 60},
		{name: "lane stream re-created", edit: func(r *Report) {
			a, b := now.Add(-time.Hour), now.Add(-time.Minute)
			r.Lanes.Items[1].Position.StreamCreated, r.Lanes.Items[1].StreamCreated = &a, &b
		}, problems: []string{"lane b sink position: stream re-created"}},
		{name: "lane stream unreadable", edit: func(r *Report) {
			r.Lanes.Items[0].StreamError = "stream not found (the daemon declares it at start-up)"
		}, problems: []string{"lane a stream: stream not found"}},
		{name: "no live member", edit: func(r *Report) {
			r.Lanes.Members = []LaneMember{}
			for i := range r.Lanes.Items {
				r.Lanes.Items[i].AssignedTo = ""
			}
		}, warnings: []string{"sink lanes: no live sink instance in CDC_sink_members, so no one applies lanes a, b"}},
		{name: "members unreadable", edit: func(r *Report) {
			r.Lanes.MembersError = "members bucket: timeout"
		}, problems: []string{"sink members: members bucket: timeout"}},
		{name: "streams carry this layout", edit: func(r *Report) {
			r.Lanes.Layout = "a:x;b:y"
			r.Lanes.Items[0].StreamLayout, r.Lanes.Items[1].StreamLayout = "a:x;b:y", "a:x;b:y"
		}},
		{name: "a stream carries another layout", edit: func(r *Report) {
			r.Lanes.Layout = "a:x;b:y"
			r.Lanes.Items[0].StreamLayout, r.Lanes.Items[1].StreamLayout = "a:x;b:y", "a/2:x;b:y"
		}, problems: []string{`lane b: stream CDC_b carries the lane layout "a/2:x;b:y", this configuration has "a:x;b:y"`}},
		{name: "lane fence unreadable", edit: func(r *Report) {
			r.Lanes.Items[1].Position.Fence.Error = "permission denied"
		}, problems: []string{"lane b fence: permission denied"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := healthyLanedReport(now)
			if tc.edit != nil {
				tc.edit(r)
			}
			// The lane's lag as the collector computes it from its stream
			// and position.
			for i := range r.Lanes.Items {
				it := &r.Lanes.Items[i]
				it.Lag = lagOf(StreamStatus{LastSeq: it.LastSeq, Error: it.StreamError}, it.Position, now)
			}
			c := &collector{r: r, opts: Options{Now: func() time.Time { return now }},
				tgt: Target{Lanes: []config.LaneConfig{{Name: "a"}, {Name: "b"}}}}
			c.lag()
			c.judge()
			check := func(kind string, got, want []string) {
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
			if r.Lag.Error == "" && r.Lag.Events != tc.events {
				t.Errorf("lag %d events, want %d", r.Lag.Events, tc.events)
			}
		})
	}
}

// TestLaneConsumers: the position keys are the consumer without lanes,
// <consumer>_<lane> with them.
func TestLaneConsumers(t *testing.T) {
	c := &collector{tgt: Target{Consumer: "cdc-sink"}}
	if got := strings.Join(c.consumers(), ","); got != "cdc-sink" {
		t.Errorf("without lanes: %s", got)
	}
	c.tgt.Lanes = []config.LaneConfig{{Name: "ledger"}, {Name: "payments"}}
	if got := strings.Join(c.consumers(), ","); got != "cdc-sink_ledger,cdc-sink_payments" {
		t.Errorf("with lanes: %s", got)
	}
}
