package progress_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/amanat/cdc/pkg/progress"
)

// TestBar: the terminal bar shows the collection, done/total and a
// rate; a resumed collection counts what is left; documents inserted
// during the scan push it past the count without finishing it early.
func TestBar(t *testing.T) {
	var buf bytes.Buffer
	d := progress.NewBar(&buf)
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

// TestLog: off a terminal, progress is structured log lines with
// done, total, rate and ETA, and a line when each collection is done.
func TestLog(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	d := progress.NewLog(zap.New(core), time.Millisecond, "snapshot")
	d.Begin("users", 300, 100)
	time.Sleep(5 * time.Millisecond)
	d.Advance("users", 100)
	d.End("users")
	var progressed, done bool
	for _, e := range logs.All() {
		f := e.ContextMap()
		switch e.Message {
		case "snapshot progress":
			progressed = f["done"] == int64(200) && f["total"] == int64(300) && f["docs_per_second"].(float64) > 0 && f["eta"] != nil
		case "snapshot collection done":
			done = f["done"] == int64(200) && f["collection"] == "users"
		}
	}
	if !progressed || !done {
		t.Fatalf("log lines: %+v", logs.All())
	}
}
