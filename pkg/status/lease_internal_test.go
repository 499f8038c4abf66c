package status

import (
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/checkpoint"
)

// The lease section: its state from the checkpoint (held; unrenewed past
// tailer.standby_takeover; released; a hand-off), the tenure and the last
// takeover when the checkpoint (v3) has them.
func TestLeaseStatus(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	since := now.Add(-time.Hour)
	tk := &checkpoint.Takeover{At: since, From: "b:2:0002", To: "a:1:0001", Reason: checkpoint.TakeoverExpired, QuietMillis: 10250}
	cp := func(age time.Duration, edit func(*checkpoint.Checkpoint)) *checkpoint.Checkpoint {
		c := &checkpoint.Checkpoint{V: 3, Owner: "a:1:0001", UpdatedAt: now.Add(-age), HeldSince: &since, LastTakeover: tk, Takeovers: 4}
		if edit != nil {
			edit(c)
		}
		return c
	}
	for _, tc := range []struct {
		name     string
		cp       *checkpoint.Checkpoint
		takeover time.Duration
		state    string
		history  bool
	}{
		{"held", cp(time.Second, nil), 10 * time.Second, LeaseHeld, true},
		{"unrenewed", cp(11*time.Second, nil), 10 * time.Second, LeaseUnrenewed, true},
		{"takeover time unknown", cp(time.Hour, nil), 0, LeaseHeld, true},
		{"released", cp(time.Hour, func(c *checkpoint.Checkpoint) { c.Released = true }), 10 * time.Second, LeaseReleased, true},
		{"hand-off", cp(time.Hour, func(c *checkpoint.Checkpoint) {
			c.Handoff, c.Owner, c.HeldSince, c.LastTakeover, c.Takeovers = true, "snapshot:h:7", nil, nil, 0
		}), 10 * time.Second, LeaseHandoff, false},
		{"v2", cp(time.Second, func(c *checkpoint.Checkpoint) { c.V, c.HeldSince, c.LastTakeover, c.Takeovers = 2, nil, nil, 0 }),
			10 * time.Second, LeaseHeld, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := leaseStatus(tc.cp, now, tc.takeover)
			if l.State != tc.state || l.Holder != tc.cp.Owner {
				t.Fatalf("state %q holder %q, want %q %q", l.State, l.Holder, tc.state, tc.cp.Owner)
			}
			if !tc.history {
				if l.HeldSince != nil || l.LastTakeover != nil || l.Takeovers != 0 {
					t.Fatalf("history from nowhere: %+v", l)
				}
				return
			}
			if !l.HeldSince.Equal(since) || l.HeldForSeconds != 3600 || l.Takeovers != 4 {
				t.Fatalf("tenure %+v", l)
			}
			want := TailerTakeover{At: since, AgoSeconds: 3600, From: "b:2:0002", To: "a:1:0001", Reason: "expired", QuietSeconds: 10.25}
			if l.LastTakeover == nil || *l.LastTakeover != want {
				t.Fatalf("last takeover %+v, want %+v", l.LastTakeover, want)
			}
		})
	}
}

// An unrenewed lease is a warning naming the holder, not a problem.
func TestJudgeUnrenewedLease(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := healthyReport(now)
	r.Tailer.AgeSeconds = 42
	r.Tailer.Lease = &TailerLease{Holder: "a:1:0001", State: LeaseUnrenewed}
	c := &collector{r: r, opts: Options{Now: func() time.Time { return now }}, tgt: Target{StandbyTakeover: 10 * time.Second}}
	c.lag()
	c.judge()
	want := "tailer lease: a:1:0001 has not written the checkpoint for 42s, over tailer.standby_takeover 10s"
	if len(r.Problems) != 0 || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], want) {
		t.Fatalf("problems %q, warnings %q; want one warning %q", r.Problems, r.Warnings, want)
	}
}
