package oplog_test

import (
	"context"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/oplog"
)

// A checkpoint at an event of a transaction written as a chain of applyOps
// entries (over 16 MB) needs the chain's first entry: the headroom is
// measured from it, and once it is gone the checkpoint is lost although
// its own time is still in the window (issue 10 row 7).
func TestHeadroomOfChainedTransaction(t *testing.T) {
	ctx := context.Background()
	srv, client := connect(t)
	coll := client.Database("w").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "before"}}); err != nil {
		t.Fatal(err)
	}
	sess, err := client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	big := strings.Repeat("x", 7<<20)
	if _, err := sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		for i := range 3 {
			if _, err := coll.InsertOne(sc, bson.D{{Key: "_id", Value: i}, {Key: "s", Value: big}}); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "after"}}); err != nil {
		t.Fatal(err)
	}
	var first, commit event.ClusterTime
	cur, err := client.Database("local").Collection("oplog.rs").Find(ctx, bson.D{{Key: "ns", Value: "admin.$cmd"}})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for cur.Next(ctx) {
		tt, ii := cur.Current.Lookup("ts").Timestamp()
		if n == 0 {
			first = event.ClusterTime{T: tt, I: ii}
		}
		commit = event.ClusterTime{T: tt, I: ii}
		n++
	}
	if n < 2 {
		t.Fatalf("the transaction is %d oplog entries, want a chain", n)
	}
	m := &oplog.Monitor{Client: client, Checkpoint: func(context.Context) (event.ClusterTime, bool, error) { return commit, true, nil }}
	e, ok, err := m.Check(ctx)
	if err != nil || !ok {
		t.Fatalf("Check: %v %v", ok, err)
	}
	if e.ChainStart == nil || *e.ChainStart != first || e.Checkpoint != commit {
		t.Fatalf("estimate %+v: want checkpoint %s with chain start %s", e, commit, first)
	}
	if want := oplog.Headroom(first, e.Oldest, e.Newest).Headroom; e.Headroom != want {
		t.Fatalf("headroom %s, want %s (from the chain's first entry)", e.Headroom, want)
	}
	if f, err := oplog.ResumeFloor(ctx, client, first); err != nil || f != first {
		t.Fatalf("ResumeFloor of the chain's first entry = %s, %v", f, err)
	}
	// The chain's first entry rolls off (the emulator, like the server's
	// resume, loses the whole transaction): lost.
	srv.TruncateOplog(bson.Timestamp{T: first.T, I: first.I + 1})
	if e, _, err = m.Check(ctx); err != nil || !e.Lost {
		t.Fatalf("after the chain's first entry left the oplog: %+v, %v; want lost", e, err)
	}
}
