package event_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/event"
	"go.mongodb.org/mongo-driver/v2/bson"
)

var update = flag.Bool("update", false, "rewrite golden files")

func mustDec(t *testing.T, s string) bson.Decimal128 {
	t.Helper()
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// changeDoc builds a change event as MongoDB sends it.
func changeDoc(t *testing.T, op string, txn bool) bson.Raw {
	t.Helper()
	oid, _ := bson.ObjectIDFromHex("65a1b2c3d4e5f60718293a4b")
	d := bson.D{
		{Key: "_id", Value: bson.D{{Key: "_data", Value: "8265A1B2C3000000012B0429296E1404"}}},
		{Key: "operationType", Value: op},
		{Key: "clusterTime", Value: bson.Timestamp{T: 1705100000, I: 7}},
		{Key: "wallTime", Value: bson.NewDateTimeFromTime(time.Date(2024, 1, 12, 22, 53, 20, 123e6, time.UTC))},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "escrow"}, {Key: "coll", Value: "payments"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: oid}}},
	}
	if op != "delete" {
		d = append(d, bson.E{Key: "fullDocument", Value: bson.D{
			{Key: "_id", Value: oid},
			{Key: "amount", Value: mustDec(t, "1234.500000000000000001")},
			{Key: "count", Value: int64(9007199254740993)},
			{Key: "at", Value: bson.NewDateTimeFromTime(time.Date(2024, 1, 12, 0, 0, 0, 0, time.UTC))},
		}})
	}
	if op == "update" {
		d = append(d, bson.E{Key: "updateDescription", Value: bson.D{
			{Key: "updatedFields", Value: bson.D{{Key: "status", Value: "completed"}}},
			{Key: "removedFields", Value: bson.A{"hold"}},
			{Key: "truncatedArrays", Value: bson.A{}},
		}})
	}
	if txn {
		d = append(d,
			bson.E{Key: "lsid", Value: bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{0xab}, 16)}}}},
			bson.E{Key: "txnNumber", Value: int64(3)})
	}
	raw, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestEnvelopeGolden pins the persisted envelope format: a change to it
// must be deliberate (go test ./pkg/event -update) and bump Version when
// it is incompatible.
func TestEnvelopeGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   string
		txn  bool
	}{
		{"insert", "insert", false},
		{"update", "update", false},
		{"delete", "delete", false},
		{"txn_replace", "replace", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, txn, err := event.FromChange(changeDoc(t, tc.op, tc.txn))
			if err != nil {
				t.Fatal(err)
			}
			if (txn != nil) != tc.txn {
				t.Fatalf("txn = %v, want present=%v", txn, tc.txn)
			}
			if txn != nil {
				ev.Source.Txn = &event.Txn{LSID: txn.LSID, Number: txn.Number, Index: 1, Last: true}
			}
			bin, err := ev.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := event.ExtJSON(bin)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".json")
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
				t.Fatalf("envelope changed:\n got %s\nwant %s", got, want)
			}
			back, err := event.Unmarshal(bin)
			if err != nil {
				t.Fatal(err)
			}
			if back.ID != ev.ID || back.Position() != ev.Position() {
				t.Fatalf("round trip changed id or position")
			}
			if tc.op != "delete" {
				doc, err := back.Document()
				if err != nil {
					t.Fatal(err)
				}
				amt := doc.Lookup("amount").Decimal128().String()
				if amt != "1234.500000000000000001" {
					t.Fatalf("Decimal128 did not survive: %s", amt)
				}
				if doc.Lookup("count").Int64() != 9007199254740993 {
					t.Fatal("int64 beyond 2^53 did not survive")
				}
			}
			key, err := back.DocKey()
			if err != nil || key != "65a1b2c3d4e5f60718293a4b" {
				t.Fatalf("DocKey = %q, %v", key, err)
			}
		})
	}
}

func TestUnmarshalRejects(t *testing.T) {
	key := bson.D{{Key: "_id", Value: 1}}
	src := bson.D{{Key: "db", Value: "d"}, {Key: "coll", Value: "c"}, {Key: "cluster_time", Value: bson.Timestamp{T: 1}}}
	for name, doc := range map[string]any{
		"future version": bson.D{{Key: "v", Value: int32(2)}, {Key: "id", Value: "x"}, {Key: "op", Value: "insert"}, {Key: "source", Value: src}, {Key: "key", Value: key}, {Key: "doc", Value: key}},
		"unknown op":     bson.D{{Key: "v", Value: int32(1)}, {Key: "id", Value: "x"}, {Key: "op", Value: "upsert"}, {Key: "source", Value: src}, {Key: "key", Value: key}},
		"no key":         bson.D{{Key: "v", Value: int32(1)}, {Key: "id", Value: "x"}, {Key: "op", Value: "delete"}, {Key: "source", Value: src}},
		"insert no doc":  bson.D{{Key: "v", Value: int32(1)}, {Key: "id", Value: "x"}, {Key: "op", Value: "insert"}, {Key: "source", Value: src}, {Key: "key", Value: key}},
		"missing source": bson.D{{Key: "v", Value: int32(1)}, {Key: "id", Value: "x"}, {Key: "op", Value: "delete"}, {Key: "key", Value: key}},
		"empty id":       bson.D{{Key: "v", Value: int32(1)}, {Key: "id", Value: ""}, {Key: "op", Value: "delete"}, {Key: "source", Value: src}, {Key: "key", Value: key}},
		"wrong type":     bson.D{{Key: "v", Value: "1"}, {Key: "id", Value: "x"}, {Key: "op", Value: "delete"}, {Key: "source", Value: src}, {Key: "key", Value: key}},
		"key without id": bson.D{{Key: "v", Value: int32(1)}, {Key: "id", Value: "x"}, {Key: "op", Value: "delete"}, {Key: "source", Value: src}, {Key: "key", Value: bson.D{{Key: "a", Value: 1}}}},
	} {
		t.Run(name, func(t *testing.T) {
			data, err := bson.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := event.Unmarshal(data)
			if err == nil {
				_, err = ev.DocKey()
			}
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := event.Unmarshal([]byte("{not bson")); err == nil {
		t.Fatal("accepted garbage")
	}
}

func TestNonDocumentChange(t *testing.T) {
	raw, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "82"}}}, {Key: "operationType", Value: "drop"}})
	if _, _, err := event.FromChange(raw); err == nil {
		t.Fatal("drop accepted as a document change")
	}
}

func TestPositionOrder(t *testing.T) {
	a := event.Position{ClusterTime: event.ClusterTime{T: 10, I: 1}, TxnIndex: 5}
	b := event.Position{ClusterTime: event.ClusterTime{T: 10, I: 2}, TxnIndex: 0}
	c := event.Position{ClusterTime: event.ClusterTime{T: 10, I: 2}, TxnIndex: 1}
	if a.Compare(b) >= 0 || b.Compare(c) >= 0 || c.Compare(c) != 0 || c.Compare(a) <= 0 {
		t.Fatal("position order wrong")
	}
	if event.Unpack(b.ClusterTime.Pack()) != b.ClusterTime || a.ClusterTime.Pack() >= b.ClusterTime.Pack() {
		t.Fatal("pack does not preserve order")
	}
}
