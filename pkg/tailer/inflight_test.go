package tailer_test

import (
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/tailer"
)

// TestInFlightBytesBound: with a byte budget smaller than one event, every
// publish waits for the one before it to be acknowledged; all events still
// reach the stream in order and the checkpoint covers them (the budget
// bounds memory, it never blocks progress).
func TestInFlightBytesBound(t *testing.T) {
	r := newRig(t, -1)
	stop := r.run(r.tailerWith("a", nil, nil, func(c *tailer.Config) { c.MaxInFlightBytes = 1 }))
	defer stop()
	r.insert(300, 2000)
	eventually(t, 30*time.Second, "300 events published and checkpointed", func() bool {
		cp, _ := r.checkpoint()
		return cp != nil && cp.Events == 300
	})
	if st := r.streamState(); st.Msgs != 300 {
		t.Fatalf("stream holds %d messages, want 300", st.Msgs)
	}
}
