package mongotest

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func renameCmd(from, to string, extra ...bson.E) bson.D {
	return append(bson.D{{Key: "renameCollection", Value: from}, {Key: "to", Value: to}}, extra...)
}

// TestRenameCollectionErrors: the refusals of renameCollection, with
// mongod's codes (rename_collection_cmd.cpp, rename_collection.cpp
// checkSourceAndTargetNamespaces, commands.cpp adminOnly) and the
// emulator's own refusal (115) for what it does not implement.
func TestRenameCollectionErrors(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	for _, coll := range []string{"a", "b"} {
		if _, err := c.Database("d").Collection(coll).InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		db   string
		cmd  bson.D
		code int
	}{
		{"not on admin", "d", renameCmd("d.a", "d.c"), 13},
		{"missing source", "admin", renameCmd("d.nope", "d.c"), 26},
		{"target exists", "admin", renameCmd("d.a", "d.b"), 48},
		{"target exists, dropTarget false", "admin", renameCmd("d.a", "d.b", bson.E{Key: "dropTarget", Value: false}), 48},
		{"onto itself", "admin", renameCmd("d.a", "d.a"), 20},
		{"no to", "admin", bson.D{{Key: "renameCollection", Value: "d.a"}}, 40414},
		{"invalid target", "admin", renameCmd("d.a", "nodot"), 73},
		{"across databases is not emulated", "admin", renameCmd("d.a", "e.a"), 115},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Database(tt.db).RunCommand(ctx, tt.cmd).Err()
			assertCode(t, err, tt.code)
		})
	}
	// Nothing moved.
	for _, coll := range []string{"a", "b"} {
		if n, err := c.Database("d").Collection(coll).CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
			t.Fatalf("d.%s: %d documents, %v; want 1", coll, n, err)
		}
	}
}

// collUUID returns the UUID listCollections reports for d.coll.
func collUUID(t *testing.T, db *mongo.Database, coll string) []byte {
	t.Helper()
	cur, err := db.ListCollections(testCtx(t), bson.D{{Key: "name", Value: coll}})
	if err != nil {
		t.Fatal(err)
	}
	var specs []bson.Raw
	if err := cur.All(testCtx(t), &specs); err != nil || len(specs) != 1 {
		t.Fatalf("listCollections %s: %d specs, %v", coll, len(specs), err)
	}
	_, b := specs[0].Lookup("info", "uuid").Binary()
	return b
}

// TestRenameCollectionMovesAndLogs: the documents move to the target (the
// target's own documents are dropped with dropTarget), and the oplog holds
// exactly the entry mongod writes: one c entry on d.$cmd with the source's
// ui, o {renameCollection, to, stayTemp, dropTarget: <target UUID>} and o2
// {numRecords}, and no separate drop of the target.
func TestRenameCollectionMovesAndLogs(t *testing.T) {
	tests := []struct {
		name       string
		dropTarget bool
	}{
		{"new target", false},
		{"dropTarget over an existing target", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t)
			c := connect(t, s)
			ctx := testCtx(t)
			db := c.Database("d")
			if _, err := db.Collection("a").InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}}); err != nil {
				t.Fatal(err)
			}
			var targetUUID []byte
			if tt.dropTarget {
				if _, err := db.Collection("b").InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "old1"}}, bson.D{{Key: "_id", Value: "old2"}}, bson.D{{Key: "_id", Value: "old3"}}}); err != nil {
					t.Fatal(err)
				}
				targetUUID = collUUID(t, db, "b")
			}
			srcUUID := collUUID(t, db, "a")
			if err := c.Database("admin").RunCommand(ctx, renameCmd("d.a", "d.b", bson.E{Key: "dropTarget", Value: tt.dropTarget})).Err(); err != nil {
				t.Fatal(err)
			}

			var docs []bson.M
			cur, err := db.Collection("b").Find(ctx, bson.D{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := cur.All(ctx, &docs); err != nil {
				t.Fatal(err)
			}
			if len(docs) != 2 || docs[0]["_id"] != int32(1) || docs[1]["_id"] != int32(2) {
				t.Fatalf("d.b after the rename = %v, want the two documents of d.a", docs)
			}
			names, err := db.ListCollectionNames(ctx, bson.D{})
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 1 || names[0] != "b" {
				t.Fatalf("collections after the rename = %v, want [b]", names)
			}
			if got := collUUID(t, db, "b"); !bytesEqual(got, srcUUID) {
				t.Fatal("the renamed collection must keep the source's UUID")
			}

			oplog := c.Database("local").Collection("oplog.rs")
			cur, err = oplog.Find(ctx, bson.D{{Key: "op", Value: "c"}, {Key: "o.renameCollection", Value: "d.a"}})
			if err != nil {
				t.Fatal(err)
			}
			var entries []bson.Raw
			if err := cur.All(ctx, &entries); err != nil || len(entries) != 1 {
				t.Fatalf("rename oplog entries: %d, %v; want 1", len(entries), err)
			}
			e := entries[0]
			if ns, _ := e.Lookup("ns").StringValueOK(); ns != "d.$cmd" {
				t.Fatalf("entry ns %q, want d.$cmd: %s", ns, e)
			}
			if _, ui := e.Lookup("ui").Binary(); !bytesEqual(ui, srcUUID) {
				t.Fatalf("entry ui is not the source's UUID: %s", e)
			}
			o := e.Lookup("o").Document()
			if to, _ := o.Lookup("to").StringValueOK(); to != "d.b" {
				t.Fatalf("o.to = %q, want d.b: %s", to, e)
			}
			if st, ok := o.Lookup("stayTemp").BooleanOK(); !ok || st {
				t.Fatalf("o.stayTemp must be false: %s", e)
			}
			dtSub, dt, hasDT := o.Lookup("dropTarget").BinaryOK()
			o2, hasO2 := e.Lookup("o2").DocumentOK()
			if tt.dropTarget {
				if !hasDT || dtSub != 4 || !bytesEqual(dt, targetUUID) {
					t.Fatalf("o.dropTarget must be the old target's UUID: %s", e)
				}
				if n, ok := o2.Lookup("numRecords").Int64OK(); !hasO2 || !ok || n != 3 {
					t.Fatalf("o2.numRecords must be NumberLong(3): %s", e)
				}
			} else if hasDT || hasO2 {
				t.Fatalf("a rename onto a new name has no dropTarget and no o2: %s", e)
			}
			if n, err := oplog.CountDocuments(ctx, bson.D{{Key: "o.drop", Value: "b"}}); err != nil || n != 0 {
				t.Fatalf("drop entries for the target: %d, %v; want none (the drop is part of the rename entry)", n, err)
			}
		})
	}
}

// TestRenameEventShape: the rename event a database stream returns, field
// by field (change_stream_event_transform.cpp; docs: reference/change-events/rename).
func TestRenameEventShape(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	db := c.Database("d")
	if _, err := db.Collection("a").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	cs, err := db.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if err := c.Database("admin").RunCommand(ctx, renameCmd("d.a", "d.b")).Err(); err != nil {
		t.Fatal(err)
	}
	var ev struct {
		ID            bson.Raw       `bson:"_id"`
		OperationType string         `bson:"operationType"`
		ClusterTime   bson.Timestamp `bson:"clusterTime"`
		WallTime      bson.DateTime  `bson:"wallTime"`
		NS            bson.M         `bson:"ns"`
		To            bson.M         `bson:"to"`
		DocumentKey   bson.Raw       `bson:"documentKey"`
	}
	e := next(t, cs, 5*time.Second)
	if err := bson.Unmarshal(e.raw, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.OperationType != "rename" || ev.NS["db"] != "d" || ev.NS["coll"] != "a" || ev.To["db"] != "d" || ev.To["coll"] != "b" ||
		ev.DocumentKey != nil || ev.ClusterTime.T == 0 || ev.WallTime == 0 {
		t.Fatalf("rename event %s", e.raw)
	}
	if sec, inc := tokenTime(t, ev.ID); sec != ev.ClusterTime.T || inc != ev.ClusterTime.I {
		t.Fatalf("token time %d.%d, want the event's clusterTime %v", sec, inc, ev.ClusterTime)
	}
	if cs.ID() == 0 {
		t.Fatal("a rename must not close a database stream")
	}
}
