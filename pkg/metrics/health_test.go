package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/state"
)

// The sink's own word decides its /readyz line: failing is shown from the
// first failed batch and turns the report unready only past
// failing_after; a standby is ready and names the holder.
func TestSinkStateInReadiness(t *testing.T) {
	m, h := New(), NewHealth()
	h.Expect("sink", time.Minute)
	sm := m.ForSink(h)
	since := time.Now().Add(-10 * time.Second)
	for _, tc := range []struct {
		name      string
		do        func()
		ready     bool
		wantCheck string
	}{
		{"active", func() { sm.SetRole("active", "a") }, true, "ok"},
		{"failing, within failing_after", func() { sm.SetFailing(since, false, "commit: connection refused") }, true, "failing since"},
		{"failing past failing_after", func() { sm.SetFailing(since, true, "commit: connection refused") }, false, "failing since"},
		{"recovered", func() { sm.SetFailing(time.Time{}, false, "") }, true, "ok"},
		{"standby", func() { sm.SetRole("standby", "host-b:42:beef") }, true, "standby (consumer held by host-b:42:beef)"},
	} {
		tc.do()
		rep := h.Ready(context.Background())
		if rep.Ready != tc.ready || !strings.Contains(rep.Checks["sink"], tc.wantCheck) {
			t.Errorf("%s: ready=%v sink=%q, want ready=%v and %q", tc.name, rep.Ready, rep.Checks["sink"], tc.ready, tc.wantCheck)
		}
	}
	sm.SetDeferred(state.DeferredStats{Waiting: 3, TxnParts: 2, Bytes: 100, Oldest: since})
}
