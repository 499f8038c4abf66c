package checkpoint_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/event"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenToken is a MongoDB resume token of cluster time 1727111859.3 (its
// _data begins 82 66F1A2B3 00000003).
const goldenToken = `{"_data":"8266F1A2B3000000032B022C0100296E5A100464A0C2E9D1B84E2A9E7B0C3D2F1A0B9C46645F696400646650B1C2D3E4F5A6B7C8D9E0F10004"}`

// goldenV3 is testdata/checkpoint_v3.json, the bytes a version 3 tailer
// stored: written here too so that a change to the format shows in this
// file's diff, not only in testdata.
const goldenV3 = `{"v":3,"token":` + goldenToken + `,"cluster_time":{"t":1727111859,"i":3},"events":42,"updated_at":"2026-09-23T17:17:39Z",` +
	`"owner":"host-a:4242:beef","held_since":"2026-09-23T16:00:00Z","last_takeover":{"at":"2026-09-23T16:00:00Z","from":"host-b:99:cafe",` +
	`"to":"host-a:4242:beef","reason":"expired","from_last_write":"2026-09-23T15:59:50Z","quiet_ms":10042},"takeovers":7}`

var (
	goldenAt    = time.Date(2026, 9, 23, 17, 17, 39, 0, time.UTC)
	goldenSince = time.Date(2026, 9, 23, 16, 0, 0, 0, time.UTC)
	goldenTk    = &checkpoint.Takeover{At: goldenSince, From: "host-b:99:cafe", To: "host-a:4242:beef", Reason: checkpoint.TakeoverExpired,
		FromLastWrite: goldenSince.Add(-10 * time.Second), QuietMillis: 10042}
	goldenCT = event.ClusterTime{T: 1727111859, I: 3}
)

// sameCheckpoint compares two checkpoints field by field; times by Equal
// (a decoded time has no monotonic reading and may differ in location).
func sameCheckpoint(a, b *checkpoint.Checkpoint) bool {
	eqTime := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	eqTk := func(x, y *checkpoint.Takeover) bool {
		return (x == nil) == (y == nil) && (x == nil || (x.At.Equal(y.At) && x.From == y.From && x.To == y.To &&
			x.Reason == y.Reason && x.FromLastWrite.Equal(y.FromLastWrite) && x.QuietMillis == y.QuietMillis))
	}
	return a.V == b.V && bytes.Equal(a.Token, b.Token) && a.ClusterTime == b.ClusterTime && a.Events == b.Events &&
		a.UpdatedAt.Equal(b.UpdatedAt) && a.Owner == b.Owner && a.Handoff == b.Handoff && a.Released == b.Released &&
		a.StartAfter == b.StartAfter && eqTime(a.HeldSince, b.HeldSince) && eqTk(a.LastTakeover, b.LastTakeover) && a.Takeovers == b.Takeovers
}

// TestGoldenFiles pins the persisted format: a change to the v3 bytes must
// be deliberate (go test ./pkg/checkpoint -run GoldenFiles -update) and
// bump Version. Each file decodes back to the checkpoint it was written
// from.
func TestGoldenFiles(t *testing.T) {
	cases := []struct {
		file string
		cp   checkpoint.Checkpoint
	}{
		{"checkpoint_v3.json", checkpoint.Checkpoint{Token: []byte(goldenToken), ClusterTime: goldenCT,
			Events: 42, UpdatedAt: goldenAt, Owner: "host-a:4242:beef", HeldSince: &goldenSince, LastTakeover: goldenTk, Takeovers: 7}},
		{"checkpoint_v3_first.json", checkpoint.Checkpoint{Token: []byte(goldenToken), ClusterTime: goldenCT,
			Events: 42, UpdatedAt: goldenAt, Owner: "host-a:4242:beef", HeldSince: &goldenSince}},
		{"checkpoint_v3_released.json", checkpoint.Checkpoint{Token: []byte(goldenToken), ClusterTime: goldenCT,
			Events: 42, UpdatedAt: goldenAt, Owner: "host-a:4242:beef", Released: true, HeldSince: &goldenSince, LastTakeover: goldenTk, Takeovers: 7}},
		{"checkpoint_v3_handoff.json", checkpoint.Checkpoint{Token: []byte(goldenToken), ClusterTime: event.ClusterTime{T: 1727111859, I: 0},
			UpdatedAt: goldenAt, Owner: "snapshot:host-b:77", Handoff: true}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			got, err := checkpoint.Encode(&tc.cp)
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
			back, err := checkpoint.Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			tc.cp.V = checkpoint.Version
			if !sameCheckpoint(back, &tc.cp) {
				t.Fatalf("round trip: %+v, want %+v", back, tc.cp)
			}
		})
	}
}

// TestGoldenBytes: the inline golden string is the v3 golden file, byte
// for byte, so the two cannot drift apart.
func TestGoldenBytes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "checkpoint_v3.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(bytes.TrimSpace(b)); got != goldenV3 {
		t.Fatalf("testdata/checkpoint_v3.json\n got %s\nwant %s", got, goldenV3)
	}
}

// TestEncode: whatever V the record says, Encode writes the current
// version, and every field appears under its persisted name (omitted when
// empty where the format says so).
func TestEncode(t *testing.T) {
	cases := []struct {
		name string
		cp   checkpoint.Checkpoint
		want string
	}{
		{"v3 with lease history", checkpoint.Checkpoint{V: 3, Token: []byte(goldenToken), ClusterTime: goldenCT, Events: 42, UpdatedAt: goldenAt,
			Owner: "host-a:4242:beef", HeldSince: &goldenSince, LastTakeover: goldenTk, Takeovers: 7}, goldenV3},
		{"v1 read, written as v3", checkpoint.Checkpoint{V: 1, Token: []byte(goldenToken), ClusterTime: goldenCT, Events: 42, UpdatedAt: goldenAt},
			`{"v":3,"token":` + goldenToken + `,"cluster_time":{"t":1727111859,"i":3},"events":42,"updated_at":"2026-09-23T17:17:39Z"}`},
		{"invalidate token", checkpoint.Checkpoint{Token: []byte(goldenToken), ClusterTime: goldenCT, UpdatedAt: goldenAt, Owner: "a:1:0001", StartAfter: true},
			`{"v":3,"token":` + goldenToken + `,"cluster_time":{"t":1727111859,"i":3},"events":0,"updated_at":"2026-09-23T17:17:39Z","owner":"a:1:0001","start_after":true}`},
		{"released", checkpoint.Checkpoint{Token: []byte(goldenToken), UpdatedAt: goldenAt, Owner: "a:1:0001", Released: true},
			`{"v":3,"token":` + goldenToken + `,"cluster_time":{"t":0,"i":0},"events":0,"updated_at":"2026-09-23T17:17:39Z","owner":"a:1:0001","released":true}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.cp.V
			got, err := checkpoint.Encode(&tc.cp)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("Encode\n got %s\nwant %s", got, tc.want)
			}
			if tc.cp.V != v {
				t.Fatalf("Encode changed the caller's V from %d to %d", v, tc.cp.V)
			}
		})
	}
	t.Run("token that is not JSON", func(t *testing.T) {
		if b, err := checkpoint.Encode(&checkpoint.Checkpoint{Token: []byte(`{"_data":`)}); err == nil {
			t.Fatalf("encoded %s", b)
		}
	})
}

// TestDecode: every version still stored decodes to what it says; an
// unknown version, a missing token or bytes that are not JSON are refused.
func TestDecode(t *testing.T) {
	read := func(file string) string {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cases := []struct {
		name    string
		in      string
		want    *checkpoint.Checkpoint // nil: refused
		errWith string
	}{
		{"v3", goldenV3, &checkpoint.Checkpoint{V: 3, Token: []byte(goldenToken), ClusterTime: goldenCT, Events: 42, UpdatedAt: goldenAt,
			Owner: "host-a:4242:beef", HeldSince: &goldenSince, LastTakeover: goldenTk, Takeovers: 7}, ""},
		{"v3 invalidate token", `{"v":3,"token":` + goldenToken + `,"cluster_time":{"t":1727111859,"i":3},"events":0,"updated_at":"2026-09-23T17:17:39Z","start_after":true}`,
			&checkpoint.Checkpoint{V: 3, Token: []byte(goldenToken), ClusterTime: goldenCT, UpdatedAt: goldenAt, StartAfter: true}, ""},
		{"v2", read("checkpoint_v2.json"), &checkpoint.Checkpoint{V: 2, Token: []byte(goldenToken), ClusterTime: goldenCT, Events: 42,
			UpdatedAt: goldenAt, Owner: "host-a:4242:beef"}, ""},
		{"v2 released", read("checkpoint_v2_released.json"), &checkpoint.Checkpoint{V: 2, Token: []byte(goldenToken), ClusterTime: goldenCT,
			Events: 42, UpdatedAt: goldenAt, Owner: "host-a:4242:beef", Released: true}, ""},
		{"v2 hand-off", read("checkpoint_v2_handoff.json"), &checkpoint.Checkpoint{V: 2, Token: []byte(goldenToken),
			ClusterTime: event.ClusterTime{T: 1727111859}, UpdatedAt: goldenAt, Owner: "snapshot:host-b:77", Handoff: true}, ""},
		{"v1", read("checkpoint_v1.json"), &checkpoint.Checkpoint{V: 1, Token: []byte(goldenToken), ClusterTime: goldenCT, Events: 42,
			UpdatedAt: goldenAt}, ""},
		{"newer version", `{"v":4,"token":{"_data":"82"}}`, nil, "checkpoint version 4 is not 1 to 3"},
		{"version 0", `{"v":0,"token":{"_data":"82"}}`, nil, "checkpoint version 0 is not 1 to 3"},
		{"no version", `{"token":{"_data":"82"}}`, nil, "checkpoint version 0 is not 1 to 3"},
		{"no token", `{"v":2}`, nil, "checkpoint without token"},
		{"not JSON", `not json`, nil, "decode checkpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := checkpoint.Decode([]byte(tc.in))
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), tc.errWith) {
					t.Fatalf("Decode(%s) = %+v, %v; want an error with %q", tc.in, got, err, tc.errWith)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !sameCheckpoint(got, tc.want) {
				t.Fatalf("Decode\n got %+v\nwant %+v", got, tc.want)
			}
			if _, err := got.ResumeToken(); err != nil {
				t.Fatalf("ResumeToken: %v", err)
			}
		})
	}
}

// TestEffectiveTime: the token's time when it has MongoDB's shape (ahead
// of ClusterTime on an idle stream), else ClusterTime, else zero.
func TestEffectiveTime(t *testing.T) {
	tokenAt := func(ct event.ClusterTime) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"_data":"82%08X%08X2B022C0100296E5A1004"}`, ct.T, ct.I))
	}
	idle := event.ClusterTime{T: 1727112000, I: 1}
	cases := []struct {
		name string
		cp   checkpoint.Checkpoint
		want event.ClusterTime
	}{
		{"after an event", checkpoint.Checkpoint{V: 3, Token: []byte(goldenToken), ClusterTime: goldenCT, Events: 42}, goldenCT},
		{"idle stream: post-batch token ahead of the last event", checkpoint.Checkpoint{V: 3, Token: tokenAt(idle), ClusterTime: goldenCT, Events: 42}, idle},
		{"pinned before the first event", checkpoint.Checkpoint{V: 3, Token: tokenAt(idle)}, idle},
		{"snapshot hand-off", checkpoint.Checkpoint{V: 3, Token: tokenAt(idle), ClusterTime: event.ClusterTime{T: idle.T}, Owner: "snapshot:h:1", Handoff: true}, idle},
		{"invalidate token", checkpoint.Checkpoint{V: 3, Token: tokenAt(idle), ClusterTime: goldenCT, StartAfter: true}, idle},
		{"v1", checkpoint.Checkpoint{V: 1, Token: []byte(goldenToken), ClusterTime: goldenCT}, goldenCT},
		{"opaque token: the last event's time", checkpoint.Checkpoint{V: 3, Token: []byte(`{"_data":"00"}`), ClusterTime: goldenCT}, goldenCT},
		{"token without _data", checkpoint.Checkpoint{V: 3, Token: []byte(`{"x":1}`), ClusterTime: goldenCT}, goldenCT},
		{"unreadable token", checkpoint.Checkpoint{V: 3, Token: []byte(`"not a document"`), ClusterTime: goldenCT}, goldenCT},
		{"opaque token, no event: unknown", checkpoint.Checkpoint{V: 3, Token: []byte(`{"_data":"00"}`)}, event.ClusterTime{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cp.EffectiveTime(); got != tc.want {
				t.Fatalf("EffectiveTime of %s (cluster_time %s) = %s, want %s", tc.cp.Token, tc.cp.ClusterTime, got, tc.want)
			}
		})
	}
}

func TestHolder(t *testing.T) {
	cases := []struct {
		name string
		cp   *checkpoint.Checkpoint
		want string
	}{
		{"deleted", nil, "nobody (deleted)"},
		{"v1", &checkpoint.Checkpoint{V: 1}, "a tailer without a fence (checkpoint version 1)"},
		{"tailer", &checkpoint.Checkpoint{V: 3, Owner: "a:1:0001"}, "a:1:0001"},
		{"hand-off", &checkpoint.Checkpoint{V: 3, Owner: "snapshot:h:7", Handoff: true}, "snapshot:h:7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cp.Holder(); got != tc.want {
				t.Fatalf("Holder() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestOwners: identities have the documented shapes, so logs and `cdc
// status` can tell a tailer's from a snapshot's.
func TestOwners(t *testing.T) {
	pid := fmt.Sprint(os.Getpid())
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	cases := []struct {
		name, got string
		want      *regexp.Regexp
	}{
		{"NewOwner(instance)", checkpoint.NewOwner("tailer-a"), regexp.MustCompile(`^tailer-a:` + pid + `:[0-9a-f]{4}$`)},
		{"NewOwner(\"\")", checkpoint.NewOwner(""), regexp.MustCompile(`^` + regexp.QuoteMeta(host) + `:` + pid + `:[0-9a-f]{4}$`)},
		{"HandoffOwner", checkpoint.HandoffOwner(), regexp.MustCompile(`^snapshot:` + regexp.QuoteMeta(host) + `:` + pid + `$`)},
	}
	for _, tc := range cases {
		if !tc.want.MatchString(tc.got) {
			t.Errorf("%s = %q, want %s", tc.name, tc.got, tc.want)
		}
	}
}

// TestMovedError: both ErrMoved and the store's refusal are reachable, and
// the message names the holder (or the deletion).
func TestMovedError(t *testing.T) {
	cause := errors.New("wrong last sequence")
	cases := []struct {
		name string
		err  *checkpoint.MovedError
		want string
	}{
		{"moved", &checkpoint.MovedError{Key: "tailer.db", Expected: 3, Revision: 5, Current: &checkpoint.Checkpoint{Owner: "b:2:0002"}, Cause: cause},
			"checkpoint moved by another writer: checkpoint tailer.db is at revision 5 written by b:2:0002 (expected revision 3)"},
		{"deleted", &checkpoint.MovedError{Key: "tailer.db", Expected: 3, Cause: cause},
			"checkpoint moved by another writer: checkpoint tailer.db was deleted (expected revision 3)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error = fmt.Errorf("save: %w", tc.err)
			if got := tc.err.Error(); got != tc.want {
				t.Fatalf("Error()\n got %s\nwant %s", got, tc.want)
			}
			var m *checkpoint.MovedError
			if !errors.Is(err, checkpoint.ErrMoved) || !errors.Is(err, cause) || !errors.As(err, &m) || !reflect.DeepEqual(m, tc.err) {
				t.Fatalf("%v: ErrMoved %v, cause %v, As %v", err, errors.Is(err, checkpoint.ErrMoved), errors.Is(err, cause), m)
			}
		})
	}
}
