package snapshot_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/snapshot"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestProgressGolden pins the persisted progress record: a change must be
// deliberate (go test ./pkg/snapshot -update) and bump ProgressVersion
// when old records can no longer be read.
func TestProgressGolden(t *testing.T) {
	p := snapshot.Progress{
		V: snapshot.ProgressVersion, Database: "escrow", ClusterTime: event.ClusterTime{T: 1705100000, I: 7},
		Handoff: "the tailer's checkpoint 1705099990.1 is at or before the snapshot's start 1705100000.7",
		Collections: []snapshot.CollectionProgress{
			{Name: "users", LastID: json.RawMessage(`{"_id":{"$oid":"65a1b2c3d4e5f60718293a4b"}}`), Done: 1000, Total: 1000, Complete: true},
			{Name: "payments", LastID: json.RawMessage(`{"_id":{"$numberLong":"42"}}`), Done: 2000, Total: 5000},
			{Name: "fundsLedger"},
		},
		Runs:      2,
		StartedAt: time.Date(2024, 1, 12, 22, 53, 20, 0, time.UTC),
		UpdatedAt: time.Date(2024, 1, 12, 22, 54, 0, 0, time.UTC),
	}
	got, err := json.Marshal(&p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "progress.json")
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(bytes.TrimSpace(want), got) {
		t.Fatalf("progress format changed:\n got %s\nwant %s", got, want)
	}
	back, err := snapshot.DecodeProgress(want)
	if err != nil {
		t.Fatal(err)
	}
	if back.ClusterTime != p.ClusterTime || len(back.Collections) != 3 || back.Collections[1].Done != 2000 {
		t.Fatalf("round trip: %+v", back)
	}
	for name, bad := range map[string]string{
		"future version": `{"v":2,"database":"d","collections":[{"name":"c"}]}`,
		"no collections": `{"v":1,"database":"d"}`,
		"not json":       `{`,
	} {
		if _, err := snapshot.DecodeProgress([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestProgressKey(t *testing.T) {
	for db, want := range map[string]string{"escrow": "snapshot.escrow", "my.db$x": "snapshot.my=2Edb=24x", "a-b_c": "snapshot.a-b_c"} {
		if got := snapshot.ProgressKey(db); got != want {
			t.Errorf("ProgressKey(%q) = %q, want %q", db, got, want)
		}
	}
}
