package tailer

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
)

func changeDoc(t *testing.T, d bson.D) bson.Raw {
	t.Helper()
	base := bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "82"}}}, {Key: "clusterTime", Value: bson.Timestamp{T: 100, I: 2}}}
	b, err := bson.Marshal(append(base, d...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLifecycleOf: which events stop the tailer, and for which collection.
func TestLifecycleOf(t *testing.T) {
	watched := []string{"orders", "users"}
	ns := func(coll string) bson.E {
		if coll == "" {
			return bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}}}
		}
		return bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: coll}}}
	}
	to := func(coll string) bson.E {
		return bson.E{Key: "to", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: coll}}}
	}
	op := func(o string) bson.E { return bson.E{Key: "operationType", Value: o} }
	cases := []struct {
		name   string
		doc    bson.D
		ok     bool
		op     LifecycleOp
		coll   string
		affect string
	}{
		{"drop of a watched collection", bson.D{op("drop"), ns("orders")}, true, LifecycleDrop, "orders", "orders"},
		{"drop of another collection", bson.D{op("drop"), ns("tmp")}, false, "", "", ""},
		{"rename away", bson.D{op("rename"), ns("orders"), to("orders_old")}, true, LifecycleRenamed, "orders", "orders"},
		{"rename onto", bson.D{op("rename"), ns("orders_new"), to("orders")}, true, LifecycleRenamedOnto, "orders", "orders"},
		{"rename elsewhere", bson.D{op("rename"), ns("a"), to("b")}, false, "", "", ""},
		{"dropDatabase", bson.D{op("dropDatabase"), ns("")}, true, LifecycleDropDatabase, "", "orders,users"},
		{"invalidate", bson.D{op("invalidate")}, true, LifecycleInvalidate, "", "orders,users"},
		{"insert", bson.D{op("insert"), ns("orders")}, false, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, ok := lifecycleOf(changeDoc(t, tc.doc), watched)
			if ok != tc.ok || ev.Op != tc.op || ev.Coll != tc.coll {
				t.Fatalf("got %v %q %q, want %v %q %q", ok, ev.Op, ev.Coll, tc.ok, tc.op, tc.coll)
			}
			if !ok {
				return
			}
			if ev.ClusterTime != (event.ClusterTime{T: 100, I: 2}) || ev.Token == nil {
				t.Fatalf("cluster time %v token %v", ev.ClusterTime, ev.Token)
			}
			if got := strings.Join(ev.affected(watched), ","); got != tc.affect {
				t.Fatalf("affected %s, want %s", got, tc.affect)
			}
		})
	}
}

// TestLifecycleMessages: each stop names the collection, what happened,
// what Postgres holds and the recovery.
func TestLifecycleMessages(t *testing.T) {
	ct := event.ClusterTime{T: 100, I: 2}
	all := []string{"orders", "users"}
	cases := []struct {
		name string
		evs  []LifecycleEvent
		want []string
	}{
		{"drop", []LifecycleEvent{{Op: LifecycleDrop, Coll: "orders", ClusterTime: ct}}, []string{
			"collection shop.orders was dropped", "Postgres still holds the rows of orders as they were just before the drop (its last state)",
			"cdc replay ids --collection orders --ids-file orders.ids", "cdc snapshot --collections orders --no-wait-tailer",
			"a restart stops here again"}},
		{"rename onto", []LifecycleEvent{{Op: LifecycleRenamedOnto, Coll: "orders", From: "orders_new", To: "orders", ClusterTime: ct}}, []string{
			"collection shop.orders_new was renamed onto the replicated collection shop.orders", "dropTarget",
			"Postgres holds the rows orders had before the rename", "cdc snapshot --collections orders --no-wait-tailer"}},
		{"rename away", []LifecycleEvent{{Op: LifecycleRenamed, Coll: "orders", From: "orders", To: "orders_old", ClusterTime: ct}}, []string{
			"collection shop.orders was renamed to shop.orders_old", "cdc snapshot --collections orders --no-wait-tailer"}},
		{"dropDatabase after its drops", []LifecycleEvent{{Op: LifecycleDrop, Coll: "orders", ClusterTime: ct}, {Op: LifecycleDrop, Coll: "users"},
			{Op: LifecycleDropDatabase}, {Op: LifecycleInvalidate}}, []string{
			`database "shop" was dropped`, "Postgres still holds the rows of orders, users", "cdc snapshot --collections orders,users --no-wait-tailer",
			"cdc replay ids --collection users"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := (&LifecycleError{Database: "shop", Events: tc.evs, Collections: all}).Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

// TestStreamErrorMessages: each fatal code has its own message and
// recovery.
func TestStreamErrorMessages(t *testing.T) {
	cases := []struct {
		e    StreamError
		want []string
	}{
		{StreamError{Code: 10334, Database: "shop", Checkpoint: "cp", DocumentKey: "shop.orders _id 7"},
			[]string{"the change event of shop.orders _id 7 is larger than 16 MB", "upgrade MongoDB to 7.0 or 6.0.9+", "reduce the document"}},
		{StreamError{Code: 10334, Database: "shop", Checkpoint: "cp", Split: true},
			[]string{"the change event right after the checkpoint", "single top-level field", "reduce the document"}},
		{StreamError{Code: 260, Database: "shop", Checkpoint: "cp"}, []string{"InvalidResumeToken, code 260", "cdc snapshot"}},
		{StreamError{Code: 280, Database: "shop", Checkpoint: "cp"}, []string{"ChangeStreamFatalError, code 280", "cdc snapshot"}},
		{StreamError{Code: 47, Database: "shop", Checkpoint: "cp"}, []string{"NoMatchingDocument, code 47", "collMod"}},
	}
	for _, tc := range cases {
		msg := tc.e.Error()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("code %d: message lacks %q:\n%s", tc.e.Code, w, msg)
			}
		}
		if Classify(&tc.e) != fault.Fatal {
			t.Errorf("code %d is not fatal", tc.e.Code)
		}
	}
}

// TestMatchStage: lifecycle events pass the server-side filter.
func TestMatchStage(t *testing.T) {
	b, err := bson.MarshalExtJSON(matchStage([]string{"orders"}), false, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"to.coll":{"$in":["orders"]}`, `"dropDatabase","invalidate"`, `"ns.coll":{"$in":["orders"]}`, `"drop","rename"`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("match stage lacks %s: %s", w, b)
		}
	}
}
