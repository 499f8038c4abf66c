package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/mongotest"
)

// TestOplogChangesApplyOps: writes of transactions, which the oplog holds
// as applyOps entries on admin.$cmd (one entry, or a partialTxn chain
// over 16 MB), are listed per operation at the commit's cluster time,
// next to plain CRUD entries.
func TestOplogChangesApplyOps(t *testing.T) {
	srv := mongotest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	m, err := newMongoSide(client, "d", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close(context.Background())
	from, err := m.now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := client.Database("d").Collection("a"), client.Database("d").Collection("b")
	if _, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	txn := func(fn func(sc context.Context) error) {
		t.Helper()
		sess, err := client.StartSession()
		if err != nil {
			t.Fatal(err)
		}
		defer sess.EndSession(context.Background())
		if _, err := sess.WithTransaction(ctx, func(sc context.Context) (any, error) { return nil, fn(sc) }); err != nil {
			t.Fatal(err)
		}
	}
	// One applyOps entry: an update of d.a and an insert into d.b.
	txn(func(sc context.Context) error {
		if _, err := a.UpdateByID(sc, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 1}}}}); err != nil {
			return err
		}
		_, err := b.InsertOne(sc, bson.D{{Key: "_id", Value: 1}})
		return err
	})
	// A chain: three 7 MB inserts into d.a do not fit one 16 MB entry.
	big := strings.Repeat("x", 7<<20)
	txn(func(sc context.Context) error {
		for i := 10; i < 13; i++ {
			if _, err := a.InsertOne(sc, bson.D{{Key: "_id", Value: i}, {Key: "big", Value: big}}); err != nil {
				return err
			}
		}
		return nil
	})
	if _, err := a.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	to, err := m.now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := m.oplogChanges(ctx, []string{"d.a"}, from, to, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var chainTs []event.ClusterTime
	for _, op := range ops {
		got = append(got, op.op+" "+op.ns)
		if op.op == "i" && len(got) > 2 {
			chainTs = append(chainTs, op.ts)
		}
	}
	if want := "i d.a,u d.a,i d.a,i d.a,i d.a,d d.a"; strings.Join(got, ",") != want {
		t.Fatalf("changes %q, want %q", strings.Join(got, ","), want)
	}
	// Every write of the chain is at the commit's time (the last entry).
	if len(chainTs) != 3 || chainTs[0] != chainTs[2] || chainTs[1] != chainTs[2] {
		t.Fatalf("chain writes at %v, want one commit time", chainTs)
	}
}
