package event_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
)

// TestFromDocument: a document read becomes an event whose id names the
// operation, the namespace, the typed key and the read's time; its
// position is (read time, 0); a delete carries no document; the envelope
// round-trips with the same key.
func TestFromDocument(t *testing.T) {
	oid, err := bson.ObjectIDFromHex("65a1b2c3d4e5f60718293a4b")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := bson.Marshal(bson.D{{Key: "_id", Value: oid}, {Key: "n", Value: 1}})
	if err != nil {
		t.Fatal(err)
	}
	strRaw, err := bson.Marshal(bson.D{{Key: "_id", Value: "65a1b2c3d4e5f60718293a4b"}})
	if err != nil {
		t.Fatal(err)
	}
	at := event.ClusterTime{T: 1705100000, I: 7}
	for _, tc := range []struct {
		name    string
		op      event.Op
		doc     bson.Raw
		wantID  string
		wantKey string
	}{
		{"snapshot", event.OpSnapshot, raw, "snap:escrow.users:65a1b2c3d4e5f60718293a4b:1705100000.7", "65a1b2c3d4e5f60718293a4b"},
		{"refresh", event.OpRefresh, raw, "ref:escrow.users:65a1b2c3d4e5f60718293a4b:1705100000.7", "65a1b2c3d4e5f60718293a4b"},
		{"delete", event.OpDelete, raw, "refdel:escrow.users:65a1b2c3d4e5f60718293a4b:1705100000.7", "65a1b2c3d4e5f60718293a4b"},
		{"string id of 24 hex digits is quoted", event.OpSnapshot, strRaw,
			`snap:escrow.users:"65a1b2c3d4e5f60718293a4b":1705100000.7`, `"65a1b2c3d4e5f60718293a4b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := event.FromDocument(tc.op, "escrow", "users", tc.doc.Lookup("_id"), tc.doc, at)
			if ev.ID != tc.wantID {
				t.Fatalf("id %q, want %q", ev.ID, tc.wantID)
			}
			if ev.Position() != (event.Position{ClusterTime: at}) {
				t.Fatalf("position %v, want (%v, 0)", ev.Position(), at)
			}
			b, err := ev.Marshal()
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			back, err := event.Unmarshal(b)
			if err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			key, err := back.DocKey()
			if err != nil || key != tc.wantKey {
				t.Fatalf("round trip key %q (%v), want %q", key, err, tc.wantKey)
			}
			if (tc.op == event.OpDelete) != (back.Doc == nil) {
				t.Fatalf("op %s carries doc %v", tc.op, back.Doc)
			}
			if k, _ := event.KeyDoc(tc.doc.Lookup("_id")).LookupErr("_id"); !k.Equal(tc.doc.Lookup("_id")) {
				t.Fatalf("KeyDoc's _id %v, want %v", k, tc.doc.Lookup("_id"))
			}
		})
	}
}
