package snapshot_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/amanat/cdc/pkg/snapshot"
)

// TestBarDisplay: the terminal bar shows the collection, done/total and a
// rate; a resumed collection counts what is left; documents inserted
// during the scan push it past the count without finishing it early.
func TestBarDisplay(t *testing.T) {
	var buf bytes.Buffer
	d := snapshot.NewBarDisplay(&buf)
	d.Begin("payments", 1000, 400)
	for i := 0; i < 7; i++ {
		d.Advance("payments", 100)
		time.Sleep(120 * time.Millisecond) // past the redraw throttle
	}
	d.End("payments")
	out := buf.String()
	for _, want := range []string{"payments (+400 earlier)", "(700/700", "docs/s", "100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar output lacks %q:\n%q", want, out)
		}
	}
}

// TestLogDisplay: off a terminal, progress is structured log lines with
// done, total, rate and ETA, and a line when each collection is done.
func TestLogDisplay(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	d := snapshot.NewLogDisplay(zap.New(core), time.Millisecond)
	d.Begin("users", 300, 100)
	time.Sleep(5 * time.Millisecond)
	d.Advance("users", 100)
	d.End("users")
	var progress, done bool
	for _, e := range logs.All() {
		f := e.ContextMap()
		switch e.Message {
		case "snapshot progress":
			progress = f["done"] == int64(200) && f["total"] == int64(300) && f["docs_per_second"].(float64) > 0 && f["eta"] != nil
		case "snapshot collection done":
			done = f["done"] == int64(200) && f["collection"] == "users"
		}
	}
	if !progress || !done {
		t.Fatalf("log lines: %+v", logs.All())
	}
}
