package tailer

import (
	"errors"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func fragment(t *testing.T, tok string, f, of int32, fields ...bson.E) bson.Raw {
	t.Helper()
	d := bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: tok}}}}
	d = append(d, fields...)
	d = append(d, bson.E{Key: "splitEvent", Value: bson.D{{Key: "fragment", Value: f}, {Key: "of", Value: of}}})
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReassemble: fragments in order join into one event whose _id is the
// last fragment's token; anything else is refused.
func TestReassemble(t *testing.T) {
	op := bson.E{Key: "operationType", Value: "update"}
	full := bson.E{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: 1}, {Key: "big", Value: strings.Repeat("x", 64)}}}
	pre := bson.E{Key: "fullDocumentBeforeChange", Value: bson.D{{Key: "_id", Value: 1}}}
	cases := []struct {
		name    string
		frags   func(t *testing.T) []bson.Raw
		wantErr string
		wantTok string
		fields  []string
	}{
		{"three in order", func(t *testing.T) []bson.Raw {
			return []bson.Raw{fragment(t, "A1", 1, 3, op), fragment(t, "A2", 2, 3, full), fragment(t, "A3", 3, 3, pre)}
		}, "", "A3", []string{"_id", "operationType", "fullDocument", "fullDocumentBeforeChange"}},
		{"one of one", func(t *testing.T) []bson.Raw { return []bson.Raw{fragment(t, "B1", 1, 1, op, full)} }, "", "B1",
			[]string{"_id", "operationType", "fullDocument"}},
		{"missing last", func(t *testing.T) []bson.Raw {
			return []bson.Raw{fragment(t, "A1", 1, 3, op), fragment(t, "A2", 2, 3, full)}
		}, "2 of 3 fragments", "", nil},
		{"missing middle", func(t *testing.T) []bson.Raw {
			return []bson.Raw{fragment(t, "A1", 1, 3, op), fragment(t, "A3", 3, 3, pre)}
		}, "fragment 3 of 3 arrived in position 2", "", nil},
		{"out of order", func(t *testing.T) []bson.Raw {
			return []bson.Raw{fragment(t, "A2", 2, 2, full), fragment(t, "A1", 1, 2, op)}
		}, "fragment 2 of 2 arrived in position 1", "", nil},
		{"counts disagree", func(t *testing.T) []bson.Raw {
			return []bson.Raw{fragment(t, "A1", 1, 2, op), fragment(t, "A2", 2, 3, full)}
		}, "says of 3, the first said of 2", "", nil},
		{"field in two fragments", func(t *testing.T) []bson.Raw {
			return []bson.Raw{fragment(t, "A1", 1, 2, op), fragment(t, "A2", 2, 2, op)}
		}, `field "operationType" is in fragments 1 and 2`, "", nil},
		{"not a fragment", func(t *testing.T) []bson.Raw {
			b, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "X"}}}, op})
			return []bson.Raw{b}
		}, "fragment 1 has no splitEvent", "", nil},
		{"none", func(*testing.T) []bson.Raw { return nil }, "no fragments", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := reassemble(tc.frags(t))
			if tc.wantErr != "" {
				if !errors.Is(err, ErrSplitEvent) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v; want ErrSplitEvent with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok := got.Lookup("_id", "_data").StringValue(); tok != tc.wantTok {
				t.Fatalf("token %s, want the last fragment's %s", tok, tc.wantTok)
			}
			elems, _ := got.Elements()
			var keys []string
			for _, e := range elems {
				keys = append(keys, e.Key())
			}
			if strings.Join(keys, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("fields %v, want %v", keys, tc.fields)
			}
			if _, err := got.LookupErr("splitEvent"); err == nil {
				t.Fatal("splitEvent kept in the whole event")
			}
		})
	}
}

func TestSplitSupported(t *testing.T) {
	cases := []struct {
		v    []int32
		want bool
	}{
		{[]int32{7, 0, 0, 0}, true},
		{[]int32{8, 0, 4, 0}, true},
		{[]int32{6, 0, 9, 0}, true},
		{[]int32{6, 0, 8, 0}, false},
		{[]int32{6, 3, 1, 0}, false},
		{[]int32{5, 0, 26, 0}, false},
		{nil, false},
	}
	for _, tc := range cases {
		if got := splitSupported(tc.v); got != tc.want {
			t.Errorf("splitSupported(%v) = %t, want %t", tc.v, got, tc.want)
		}
	}
}
