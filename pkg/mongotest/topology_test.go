package mongotest

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	driverevent "go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/description"
)

func startTopology(t *testing.T, topology string) *Server {
	t.Helper()
	s, err := New(Options{Topology: topology})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// topologySeen connects to s and returns the driver's description of the
// topology once its only server has been classified.
func topologySeen(t *testing.T, s *Server) (*mongo.Client, driverevent.TopologyDescription) {
	t.Helper()
	var mu sync.Mutex
	var last driverevent.TopologyDescription
	mon := &driverevent.ServerMonitor{TopologyDescriptionChanged: func(e *driverevent.TopologyDescriptionChangedEvent) {
		mu.Lock()
		defer mu.Unlock()
		last = e.NewDescription
	}}
	c := connect(t, s, options.Client().SetServerMonitor(mon))
	mu.Lock()
	defer mu.Unlock()
	return c, last
}

// TestTopologyDriverClassification: the Go driver classifies each
// Options.Topology as the real server kind (mongo/description/server.go,
// NewServer), and hello carries what that kind carries.
func TestTopologyDriverClassification(t *testing.T) {
	tests := []struct {
		topology     string
		server       string
		kind         string
		msg          string
		hasSetName   bool
		hasHostsList bool
	}{
		{"", description.ServerKindRSPrimary.String(), description.TopologyKindReplicaSetWithPrimary.String(), "", true, true},
		{TopologyMongos, description.ServerKindMongos.String(), description.TopologyKindSharded.String(), "isdbgrid", false, false},
		{TopologyStandalone, description.ServerKindStandalone.String(), description.TopologyKindSingle.String(), "", false, false},
	}
	for _, tt := range tests {
		t.Run("topology="+tt.topology, func(t *testing.T) {
			s := startTopology(t, tt.topology)
			c, topo := topologySeen(t, s)
			if topo.Kind != tt.kind || len(topo.Servers) != 1 || topo.Servers[0].Kind != tt.server {
				t.Fatalf("driver sees %v, want a %v topology of one %v", topo, tt.kind, tt.server)
			}
			var hello bson.M
			if err := c.Database("admin").RunCommand(testCtx(t), bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
				t.Fatal(err)
			}
			msg, _ := hello["msg"].(string)
			_, hasSet := hello["setName"]
			_, hasHosts := hello["hosts"]
			if msg != tt.msg || hasSet != tt.hasSetName || hasHosts != tt.hasHostsList || hello["isWritablePrimary"] != true {
				t.Fatalf("hello %v: want msg %q, setName %v, hosts %v, isWritablePrimary true", hello, tt.msg, tt.hasSetName, tt.hasHostsList)
			}
		})
	}
}

// TestStandaloneRefuses: on a standalone, change streams fail with 40573,
// transactions with IllegalOperation (20), replSetGetStatus with 76, and
// there is no oplog to read; plain CRUD works.
func TestStandaloneRefuses(t *testing.T) {
	s := startTopology(t, TopologyStandalone)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatalf("insert on a standalone: %v", err)
	}

	_, err := coll.Watch(ctx, mongo.Pipeline{})
	assertCode(t, err, 40573)
	_, err = c.Database("d").Watch(ctx, mongo.Pipeline{})
	assertCode(t, err, 40573)

	sess, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		return coll.InsertOne(sc, bson.D{{Key: "_id", Value: 2}})
	})
	assertCode(t, err, 20)
	if n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil || n != 0 {
		t.Fatalf("the refused transaction wrote: %d, %v", n, err)
	}

	err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "replSetGetStatus", Value: 1}}).Err()
	assertCode(t, err, 76)

	n, err := c.Database("local").Collection("oplog.rs").CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var entries []bson.Raw
	cur, err := c.Database("local").Collection("oplog.rs").Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.All(ctx, &entries); err != nil || len(entries) != 0 {
		t.Fatalf("a standalone has no oplog: find returned %d entries, %v (count %d)", len(entries), err, n)
	}
}

// TestMongosRefusesLocal: through mongos the local database is refused
// (IllegalOperation 20) and replSetGetStatus does not exist (59); change
// streams and transactions work as on a one-shard cluster.
func TestMongosRefusesLocal(t *testing.T) {
	s := startTopology(t, TopologyMongos)
	c := connect(t, s)
	ctx := testCtx(t)
	_, err := c.Database("local").Collection("oplog.rs").Find(ctx, bson.D{})
	assertCode(t, err, 20)
	err = c.Database("admin").RunCommand(ctx, bson.D{{Key: "replSetGetStatus", Value: 1}}).Err()
	assertCode(t, err, 59)

	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	sess, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	if _, err := sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		return coll.InsertOne(sc, bson.D{{Key: "_id", Value: 1}})
	}); err != nil {
		t.Fatalf("transaction through mongos: %v", err)
	}
	if ev := next(t, cs, 5*time.Second); ev.OperationType != "insert" || ev.TxnNumber == nil {
		t.Fatalf("event through mongos: %s", ev.raw)
	}
}

func TestTopologyOptionInvalid(t *testing.T) {
	if s, err := New(Options{Topology: "sharded"}); err == nil {
		_ = s.Close()
		t.Fatal("an unknown Options.Topology must be refused")
	}
}
