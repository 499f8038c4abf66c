package replay_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/replay"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestCheckTarget: the allow-list is a whitelist of exact hosts, never a
// substring or pattern match; --yes must name the host.
func TestCheckTarget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		url     string
		allowed []string
		yes     []string
		ok      bool
	}{
		{"listed host", "postgres://u@db.staging.internal:5432/escrow", []string{"db.staging.internal"}, nil, true},
		{"listed host and port", "postgres://u@db.staging.internal:5433/escrow", []string{"db.staging.internal:5433"}, nil, true},
		{"other port", "postgres://u@db.staging.internal:5432/escrow", []string{"db.staging.internal:5433"}, nil, false},
		{"case-insensitive", "postgres://u@DB.Staging.Internal/escrow", []string{"db.staging.internal"}, nil, true},
		{"substring of the host", "postgres://u@prod-db.internal/escrow", []string{"db.internal"}, nil, false},
		{"host is a prefix", "postgres://u@staging.prod.internal/escrow", []string{"staging"}, nil, false},
		{"entry contains the host", "postgres://u@prod/escrow", []string{"prod.staging"}, nil, false},
		{"empty list", "postgres://u@db1/escrow", nil, nil, false},
		{"confirmed with --yes", "postgres://u@db1/escrow", nil, []string{"db1"}, true},
		{"--yes names another host", "postgres://u@db1/escrow", nil, []string{"db2"}, false},
		{"--yes substring", "postgres://u@db10/escrow", nil, []string{"db1"}, false},
		{"multi-host: all must pass", "postgres://u@db1:5432,db2:5432/escrow", []string{"db1"}, nil, false},
		{"multi-host: all listed", "postgres://u@db1:5432,db2:5432/escrow", []string{"db1", "db2"}, nil, true},
		{"ipv6", "postgres://u@[::1]:5432/escrow", []string{"[::1]:5432"}, nil, true},
		{"ipv6 bare", "postgres://u@[::1]:5432/escrow", []string{"::1"}, nil, true},
		{"loopback names differ", "postgres://u@127.0.0.1:5432/escrow", []string{"localhost"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := replay.CheckTarget(tc.url, tc.allowed, tc.yes)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok {
				if !errors.Is(err, replay.ErrTargetRefused) {
					t.Fatalf("want a refusal, got %v", err)
				}
				if !strings.Contains(err.Error(), "--yes") || !strings.Contains(err.Error(), "snapshot.allowed_targets") {
					t.Fatalf("refusal does not say what to do: %v", err)
				}
			}
		})
	}
	if _, err := replay.CheckTarget("postgres://u:secret@db1:notaport/x", nil, nil); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad url: %v", err)
	}
}

func TestParseClusterTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		end  bool
		want event.ClusterTime
		bad  bool
	}{
		{"1705100000.7", false, event.ClusterTime{T: 1705100000, I: 7}, false},
		{"1705100000.7", true, event.ClusterTime{T: 1705100000, I: 7}, false},
		{"1705100000", false, event.ClusterTime{T: 1705100000}, false},
		{"1705100000", true, event.ClusterTime{T: 1705100000, I: math.MaxUint32}, false},
		{"2024-01-12T22:53:20Z", false, event.ClusterTime{T: 1705100000}, false},
		{"2024-01-12T22:53:20.9Z", true, event.ClusterTime{T: 1705100000, I: math.MaxUint32}, false},
		{"2024-01-13T00:53:20+02:00", false, event.ClusterTime{T: 1705100000}, false},
		{"yesterday", false, event.ClusterTime{}, true},
		{"99999999999.1", false, event.ClusterTime{}, true},
		{"1969-01-01T00:00:00Z", false, event.ClusterTime{}, true},
	} {
		got, err := replay.ParseClusterTime(tc.in, tc.end)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("ParseClusterTime(%q, %v) = %v, %v; want %v (error %v)", tc.in, tc.end, got, err, tc.want, tc.bad)
		}
	}
}

// TestKeyCandidates: every _id the sink keys by event.KeyString is found
// again from its key string, as one value (keys are typed: a 24-hex key
// is the ObjectId, the string of those digits has a quoted key).
func TestKeyCandidates(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex("65a1b2c3d4e5f60718293a4b")
	for _, v := range []any{oid, "plain-string", "65a1b2c3d4e5f60718293a4b", `{"$numberInt":"7"}`, int64(42), int32(7), 3.5,
		bson.NewDateTimeFromTime(bson.NewObjectID().Timestamp()), bson.D{{Key: "a", Value: 1}}} {
		raw, err := bson.Marshal(bson.D{{Key: "_id", Value: v}})
		if err != nil {
			t.Fatal(err)
		}
		id := bson.Raw(raw).Lookup("_id")
		key := event.KeyString(id)
		cands, err := replay.KeyCandidates(key)
		if err != nil {
			t.Fatalf("%v (%s): %v", v, key, err)
		}
		if len(cands) != 1 || event.KeyString(cands[0]) != key {
			t.Fatalf("%T %v: key %q gives candidates %v, want one value of that key", v, v, key, cands)
		}
		if c := cands[0]; id.Type != bson.TypeInt32 && id.Type != bson.TypeDouble && (c.Type != id.Type || string(c.Value) != string(id.Value)) {
			t.Fatalf("%T %v: key %q gives %s %v", v, v, key, c.Type, c)
		}
	}
	if c, _ := replay.KeyCandidates("65a1b2c3d4e5f60718293a4b"); len(c) != 1 || c[0].Type != bson.TypeObjectID {
		t.Fatalf("24 hex digits: %v, want the ObjectId alone", c)
	}
	if c, _ := replay.KeyCandidates(`"65a1b2c3d4e5f60718293a4b"`); len(c) != 1 || c[0].Type != bson.TypeString {
		t.Fatalf("quoted 24 hex digits: %v, want the string alone", c)
	}
	if _, err := replay.KeyCandidates(`{"$numberLong": }`); !errors.Is(err, event.ErrBadKey) {
		t.Fatalf("malformed Extended JSON: %v, want ErrBadKey", err)
	}
}
