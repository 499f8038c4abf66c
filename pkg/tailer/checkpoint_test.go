package tailer_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/tailer"
)

var update = flag.Bool("update", false, "rewrite golden files")

const goldenToken = `{"_data":"8266F1A2B3000000032B022C0100296E5A100464A0C2E9D1B84E2A9E7B0C3D2F1A0B9C46645F696400646650B1C2D3E4F5A6B7C8D9E0F10004"}`

// TestCheckpointGolden pins the persisted format: a change to the v3 bytes
// must be deliberate (go test ./pkg/tailer -run Golden -update) and bump
// CheckpointVersion; v1 checkpoints (written before the fence) and v2 ones
// (before the lease history) stay readable.
func TestCheckpointGolden(t *testing.T) {
	at := time.Date(2026, 9, 23, 17, 17, 39, 0, time.UTC)
	since := time.Date(2026, 9, 23, 16, 0, 0, 0, time.UTC)
	tk := &tailer.Takeover{At: since, From: "host-b:99:cafe", To: "host-a:4242:beef", Reason: tailer.TakeoverExpired,
		FromLastWrite: since.Add(-10 * time.Second), QuietMillis: 10042}
	cases := []struct {
		file string
		cp   tailer.Checkpoint
	}{
		{"checkpoint_v3.json", tailer.Checkpoint{Token: []byte(goldenToken), ClusterTime: event.ClusterTime{T: 1727111859, I: 3},
			Events: 42, UpdatedAt: at, Owner: "host-a:4242:beef", HeldSince: &since, LastTakeover: tk, Takeovers: 7}},
		{"checkpoint_v3_first.json", tailer.Checkpoint{Token: []byte(goldenToken), ClusterTime: event.ClusterTime{T: 1727111859, I: 3},
			Events: 42, UpdatedAt: at, Owner: "host-a:4242:beef", HeldSince: &since}},
		{"checkpoint_v3_released.json", tailer.Checkpoint{Token: []byte(goldenToken), ClusterTime: event.ClusterTime{T: 1727111859, I: 3},
			Events: 42, UpdatedAt: at, Owner: "host-a:4242:beef", Released: true, HeldSince: &since, LastTakeover: tk, Takeovers: 7}},
		{"checkpoint_v3_handoff.json", tailer.Checkpoint{Token: []byte(goldenToken), ClusterTime: event.ClusterTime{T: 1727111859, I: 0},
			UpdatedAt: at, Owner: "snapshot:host-b:77", Handoff: true}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			got, err := tailer.EncodeCheckpoint(&tc.cp)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, bytes.TrimSpace(want)) {
				t.Fatalf("encoding changed:\n got %s\nwant %s", got, want)
			}
			back, err := tailer.DecodeCheckpoint(want)
			if err != nil {
				t.Fatal(err)
			}
			tc.cp.V = tailer.CheckpointVersion
			if back.V != 3 || string(back.Token) != goldenToken || back.Owner != tc.cp.Owner || back.Handoff != tc.cp.Handoff ||
				back.Released != tc.cp.Released || back.Events != tc.cp.Events || !back.UpdatedAt.Equal(at) || back.ClusterTime != tc.cp.ClusterTime ||
				back.Takeovers != tc.cp.Takeovers || (back.HeldSince == nil) != (tc.cp.HeldSince == nil) ||
				(back.HeldSince != nil && !back.HeldSince.Equal(since)) || (back.LastTakeover == nil) != (tc.cp.LastTakeover == nil) ||
				(back.LastTakeover != nil && (*back.LastTakeover != *tk)) {
				t.Fatalf("round trip: %+v, want %+v", back, tc.cp)
			}
		})
	}
	t.Run("v2 is still read", func(t *testing.T) {
		for _, f := range []struct {
			file              string
			owner             string
			released, handoff bool
		}{
			{"checkpoint_v2.json", "host-a:4242:beef", false, false},
			{"checkpoint_v2_released.json", "host-a:4242:beef", true, false},
			{"checkpoint_v2_handoff.json", "snapshot:host-b:77", false, true},
		} {
			b, err := os.ReadFile(filepath.Join("testdata", f.file))
			if err != nil {
				t.Fatal(err)
			}
			cp, err := tailer.DecodeCheckpoint(b)
			if err != nil {
				t.Fatalf("%s: %v", f.file, err)
			}
			if cp.V != 2 || string(cp.Token) != goldenToken || cp.Owner != f.owner || cp.Released != f.released || cp.Handoff != f.handoff ||
				cp.HeldSince != nil || cp.LastTakeover != nil || cp.Takeovers != 0 || !cp.UpdatedAt.Equal(at) {
				t.Fatalf("%s: %+v", f.file, cp)
			}
		}
	})
	t.Run("v1 is still read", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("testdata", "checkpoint_v1.json"))
		if err != nil {
			t.Fatal(err)
		}
		cp, err := tailer.DecodeCheckpoint(b)
		if err != nil {
			t.Fatal(err)
		}
		if cp.V != 1 || string(cp.Token) != goldenToken || cp.Events != 42 || cp.ClusterTime != (event.ClusterTime{T: 1727111859, I: 3}) ||
			cp.Owner != "" || cp.Handoff || cp.Released {
			t.Fatalf("v1: %+v", cp)
		}
		if _, err := cp.ResumeToken(); err != nil {
			t.Fatal(err)
		}
		// Written again, it is a current-version checkpoint.
		out, err := tailer.EncodeCheckpoint(cp)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := tailer.DecodeCheckpoint(out); err != nil || again.V != tailer.CheckpointVersion {
			t.Fatalf("re-encoded v1: %s (%v)", out, err)
		}
	})
	t.Run("unknown version and no token refused", func(t *testing.T) {
		for _, b := range []string{`{"v":4,"token":{"_data":"82"}}`, `{"v":0,"token":{"_data":"82"}}`, `{"v":2}`, `not json`} {
			if _, err := tailer.DecodeCheckpoint([]byte(b)); err == nil {
				t.Errorf("%s decoded", b)
			}
		}
	})
}

// natsJS starts an embedded server with the declared streams and bucket.
func natsJS(t *testing.T, maxBytes int64) (jetstream.JetStream, bus.StreamsConfig) {
	t.Helper()
	_, js := bustest.Start(t)
	sc := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: 2 * time.Minute, MaxAge: 24 * time.Hour, MaxBytes: maxBytes, CheckpointBucket: "ckpt"}
	if err := bus.Ensure(context.Background(), js, sc); err != nil {
		t.Fatal(err)
	}
	return js, sc
}

// TestTwoStoresOneKey: writes are revision-checked. Of two writers that
// loaded the same revision, the second Save fails with a *MovedError that
// names what is stored and who wrote it; so does a create over an
// existing checkpoint. Reloading gives the revision to write over.
func TestTwoStoresOneKey(t *testing.T) {
	ctx := context.Background()
	js, sc := natsJS(t, -1)
	a, err := tailer.NewKVCheckpoints(ctx, js, sc.CheckpointBucket, tailer.CheckpointKey("escrow"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tailer.NewKVCheckpoints(ctx, js, sc.CheckpointBucket, tailer.CheckpointKey("escrow"))
	if err != nil {
		t.Fatal(err)
	}
	if cp, rev, err := a.Load(ctx); cp != nil || rev != 0 || err != nil {
		t.Fatalf("empty bucket: %v, %d, %v", cp, rev, err)
	}
	cp := func(owner string) *tailer.Checkpoint {
		return &tailer.Checkpoint{Token: []byte(goldenToken), Owner: owner, UpdatedAt: time.Now().UTC()}
	}
	rev1, err := a.Save(ctx, cp("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// A create over it fails.
	_, err = b.Save(ctx, cp("b"), 0)
	var moved *tailer.MovedError
	if !errors.As(err, &moved) || !errors.Is(err, tailer.ErrCheckpointMoved) || moved.Revision != rev1 || moved.Holder() != "a" {
		t.Fatalf("create over an existing checkpoint: %v", err)
	}
	// Both load the same revision; the first writer wins.
	_, ra, err := a.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, rb, err := b.Load(ctx)
	if err != nil || ra != rb || ra != rev1 {
		t.Fatalf("loads: %d, %d (%v)", ra, rb, err)
	}
	rev2, err := a.Save(ctx, cp("a"), ra)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Save(ctx, cp("b"), rb)
	if !errors.As(err, &moved) || moved.Expected != rb || moved.Revision != rev2 || moved.Current == nil || moved.Current.Owner != "a" {
		t.Fatalf("second Save on a stale revision: %v", err)
	}
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("the library's sentinel is not reachable through %v", err)
	}
	if got, rev, _ := a.Load(ctx); got.Owner != "a" || rev != rev2 {
		t.Fatalf("stored: %+v at %d, want a's write at %d", got, rev, rev2)
	}
	// After a reload the second writer may write over it.
	if _, err := b.Save(ctx, cp("b"), moved.Revision); err != nil {
		t.Fatal(err)
	}
	// A deleted checkpoint: the stale writer is told so (Current nil) and
	// may create it again.
	if err := a.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = a.Save(ctx, cp("a"), rev2)
	if !errors.As(err, &moved) || moved.Current != nil || moved.Revision != 0 {
		t.Fatalf("write over a deleted checkpoint: %v", err)
	}
	if _, err := a.Save(ctx, cp("a"), 0); err != nil {
		t.Fatalf("re-create after delete: %v", err)
	}
}
