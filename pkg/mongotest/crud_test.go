package mongotest

import (
	"errors"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestConnectPing(t *testing.T) {
	s := Start(t)
	c := connect(t, s)
	ctx := testCtx(t)
	var res bson.M
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&res); err != nil {
		t.Fatal(err)
	}
	if res["version"] != "7.0.0" {
		t.Fatalf("buildInfo version = %v", res["version"])
	}
	var hello bson.M
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		t.Fatal(err)
	}
	if hello["setName"] != "rs0" || hello["isWritablePrimary"] != true {
		t.Fatalf("hello = %v", hello)
	}
	if _, ok := hello["topologyVersion"]; ok {
		t.Fatal("hello must not report topologyVersion")
	}
	err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "noSuchCommand", Value: 1}}).Err()
	var se mongo.ServerError
	if !errors.As(err, &se) || !se.HasErrorCode(59) {
		t.Fatalf("unknown command: %v", err)
	}
}

func TestInsertFindUpdateDelete(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("bank").Collection("accounts")

	res, err := coll.InsertOne(ctx, bson.D{{Key: "name", Value: "alice"}, {Key: "balance", Value: int32(10)}})
	if err != nil {
		t.Fatal(err)
	}
	id, ok := res.InsertedID.(bson.ObjectID)
	if !ok {
		t.Fatalf("InsertedID = %T", res.InsertedID)
	}
	// Duplicate _id is a write error 11000.
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}})
	if !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("duplicate insert: %v", err)
	}

	var got bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["name"] != "alice" || got["balance"] != int32(10) {
		t.Fatalf("found %v", got)
	}

	// $set, $inc (int32 + int64 promotes), $unset.
	ur, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{
		{Key: "$set", Value: bson.D{{Key: "name", Value: "Alice"}, {Key: "addr.city", Value: "Almaty"}}},
		{Key: "$inc", Value: bson.D{{Key: "balance", Value: int64(5)}}},
	})
	if err != nil || ur.MatchedCount != 1 || ur.ModifiedCount != 1 {
		t.Fatalf("update: %+v %v", ur, err)
	}
	got = nil
	if err := coll.FindOne(ctx, bson.D{{Key: "addr.city", Value: "Almaty"}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["balance"] != int64(15) || got["name"] != "Alice" {
		t.Fatalf("after update %v", got)
	}
	// A no-op update matches but does not modify.
	ur, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "Alice"}}}})
	if err != nil || ur.MatchedCount != 1 || ur.ModifiedCount != 0 {
		t.Fatalf("noop update: %+v %v", ur, err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$unset", Value: bson.D{{Key: "addr", Value: ""}}}}); err != nil {
		t.Fatal(err)
	}
	// Decimal128 $inc is exact.
	dec, _ := bson.ParseDecimal128("0.10")
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "money", Value: dec}}}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		d2, _ := bson.ParseDecimal128("0.20")
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "money", Value: d2}}}}); err != nil {
			t.Fatal(err)
		}
	}
	got = nil
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if _, has := got["addr"]; has {
		t.Fatalf("addr not unset: %v", got)
	}
	if m, ok := got["money"].(bson.Decimal128); !ok || m.String() != "0.50" {
		t.Fatalf("money = %v (%T)", got["money"], got["money"])
	}

	// _id is immutable.
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "_id", Value: 5}}}})
	var we mongo.WriteException
	if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Code != 66 {
		t.Fatalf("changing _id: %v", err)
	}

	// Replacement keeps _id.
	rr, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "name", Value: "A"}, {Key: "v", Value: 2}})
	if err != nil || rr.ModifiedCount != 1 {
		t.Fatalf("replace: %+v %v", rr, err)
	}
	got = nil
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["v"] != int32(2) {
		t.Fatalf("after replace %v", got)
	}

	// Upsert with $setOnInsert builds the document from the filter.
	ur, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "acct-2"}, {Key: "kind", Value: "savings"}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "balance", Value: 7}}}, {Key: "$setOnInsert", Value: bson.D{{Key: "opened", Value: true}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil || ur.UpsertedCount != 1 || ur.UpsertedID != "acct-2" {
		t.Fatalf("upsert: %+v %v", ur, err)
	}
	got = nil
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "acct-2"}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["kind"] != "savings" || got["balance"] != int32(7) || got["opened"] != true {
		t.Fatalf("upserted %v", got)
	}
	// $push.
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "acct-2"}}, bson.D{{Key: "$push", Value: bson.D{{Key: "log", Value: "a"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "acct-2"}}, bson.D{{Key: "$push", Value: bson.D{{Key: "log", Value: "b"}}}}); err != nil {
		t.Fatal(err)
	}
	n, err := coll.CountDocuments(ctx, bson.D{{Key: "log", Value: "b"}})
	if err != nil || n != 1 {
		t.Fatalf("count log=b: %d %v", n, err)
	}

	// Multi update and CountDocuments / EstimatedDocumentCount.
	docs := make([]any, 0, 10)
	for i := 0; i < 10; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "grp", Value: i % 2}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	ur, err = coll.UpdateMany(ctx, bson.D{{Key: "grp", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "odd", Value: true}}}})
	if err != nil || ur.MatchedCount != 5 || ur.ModifiedCount != 5 {
		t.Fatalf("update many: %+v %v", ur, err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{{Key: "odd", Value: true}}); err != nil || n != 5 {
		t.Fatalf("CountDocuments = %d %v", n, err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{}, options.Count().SetSkip(2).SetLimit(5)); err != nil || n != 5 {
		t.Fatalf("CountDocuments skip/limit = %d %v", n, err)
	}
	if n, err := coll.EstimatedDocumentCount(ctx); err != nil || n != 12 {
		t.Fatalf("EstimatedDocumentCount = %d %v", n, err)
	}

	// Deletes.
	dr, err := coll.DeleteOne(ctx, bson.D{{Key: "grp", Value: 0}})
	if err != nil || dr.DeletedCount != 1 {
		t.Fatalf("delete one: %+v %v", dr, err)
	}
	dr, err = coll.DeleteMany(ctx, bson.D{{Key: "grp", Value: bson.D{{Key: "$in", Value: bson.A{0, 1}}}}})
	if err != nil || dr.DeletedCount != 9 {
		t.Fatalf("delete many: %+v %v", dr, err)
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: 0}}).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatalf("deleted doc found: %v", err)
	}

	// FindOneAndUpdate.
	var fam bson.M
	err = coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "acct-2"}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "balance", Value: 1}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&fam)
	if err != nil || fam["balance"] != int32(8) {
		t.Fatalf("FindOneAndUpdate: %v %v", fam, err)
	}
}

func TestFindSortLimitAcrossTypesAndBatches(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("db").Collection("mixed")
	oid := bson.NewObjectID()
	mixed := []any{
		bson.D{{Key: "_id", Value: "b"}},
		bson.D{{Key: "_id", Value: int64(3)}},
		bson.D{{Key: "_id", Value: oid}},
		bson.D{{Key: "_id", Value: 2.5}},
		bson.D{{Key: "_id", Value: "a"}},
		bson.D{{Key: "_id", Value: int32(1)}},
		bson.D{{Key: "_id", Value: true}},
		bson.D{{Key: "_id", Value: bson.D{{Key: "x", Value: 1}}}},
	}
	if _, err := coll.InsertMany(ctx, mixed); err != nil {
		t.Fatal(err)
	}
	// BSON order: numbers < strings < objects < ObjectId < bool.
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	var all []bson.M
	if err := cur.All(ctx, &all); err != nil {
		t.Fatal(err)
	}
	want := []string{"1", "2.5", "3", "a", "b", `{"x":{"$numberInt":"1"}}`, oid.String(), "true"}
	if len(all) != len(want) {
		t.Fatalf("got %d docs", len(all))
	}
	for i, d := range all {
		if got := fmt.Sprint(d["_id"]); got != want[i] {
			t.Fatalf("position %d: %s, want %s (all %v)", i, got, want[i], all)
		}
	}
	// $gt is type-bracketed: only numbers above 1.
	cur, err = coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: 1}}}}, options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}))
	if err != nil {
		t.Fatal(err)
	}
	all = nil
	if err := cur.All(ctx, &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0]["_id"] != int64(3) || all[1]["_id"] != 2.5 {
		t.Fatalf("$gt 1 desc: %v", all)
	}
	// $gte on strings with limit.
	cur, err = coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: "a"}}}}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(1))
	if err != nil {
		t.Fatal(err)
	}
	all = nil
	if err := cur.All(ctx, &all); err != nil || len(all) != 1 || all[0]["_id"] != "a" {
		t.Fatalf("$gte a limit 1: %v %v", all, err)
	}

	// More results than one batch: 1000 documents read with batch size 64,
	// paginated by _id.
	big := c.Database("db").Collection("big")
	docs := make([]any, 1000)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int64(i)}, {Key: "v", Value: i % 7}}
	}
	if _, err := big.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	cur, err = big.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: int64(100)}}}},
		options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetBatchSize(64))
	if err != nil {
		t.Fatal(err)
	}
	next := int64(100)
	for cur.Next(ctx) {
		if got := cur.Current.Lookup("_id").Int64(); got != next {
			t.Fatalf("got _id %d want %d", got, next)
		}
		next++
	}
	if err := cur.Err(); err != nil || next != 1000 {
		t.Fatalf("cursor ended at %d: %v", next, err)
	}
	_ = cur.Close(ctx)
	// Sort on another field, skip and limit.
	cur, err = big.Find(ctx, bson.D{{Key: "v", Value: bson.D{{Key: "$in", Value: bson.A{1, 2}}}}},
		options.Find().SetSort(bson.D{{Key: "v", Value: -1}, {Key: "_id", Value: 1}}).SetSkip(1).SetLimit(3))
	if err != nil {
		t.Fatal(err)
	}
	all = nil
	if err := cur.All(ctx, &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0]["_id"] != int64(9) || all[0]["v"] != int32(2) {
		t.Fatalf("sort by v: %v", all)
	}
	n, err := big.CountDocuments(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: 500}}}})
	if err != nil || n != 500 {
		t.Fatalf("count _id<500: %d %v", n, err)
	}
}

func TestCollectionsAndDatabases(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	db := c.Database("shop")
	if err := db.CreateCollection(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("items").InsertOne(ctx, bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil || fmt.Sprint(names) != "[items orders]" {
		t.Fatalf("collections %v %v", names, err)
	}
	dbs, err := c.ListDatabaseNames(ctx, bson.D{})
	if err != nil || fmt.Sprint(dbs) != "[admin config local shop]" {
		t.Fatalf("databases %v %v", dbs, err)
	}
	if err := db.Collection("orders").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Collection("nope").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	dbs, _ = c.ListDatabaseNames(ctx, bson.D{})
	if fmt.Sprint(dbs) != "[admin config local]" {
		t.Fatalf("after dropDatabase %v", dbs)
	}
	if _, err := c.Database("shop").Collection("items").Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "x", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
}

func TestOplogWindowQuery(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	if _, err := c.Database("a").Collection("b").InsertOne(ctx, bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	oplog := c.Database("local").Collection("oplog.rs")
	var first, last bson.Raw
	var err error
	if first, err = oplog.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "$natural", Value: 1}})).Raw(); err != nil {
		t.Fatal(err)
	}
	if last, err = oplog.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "$natural", Value: -1}})).Raw(); err != nil {
		t.Fatal(err)
	}
	ft, fi := first.Lookup("ts").Timestamp()
	lt, li := last.Lookup("ts").Timestamp()
	if (bson.Timestamp{T: ft, I: fi}) != s.OldestOplogTime() || (bson.Timestamp{T: lt, I: li}) != s.LatestOplogTime() {
		t.Fatalf("oplog window %d.%d-%d.%d vs server %v-%v", ft, fi, lt, li, s.OldestOplogTime(), s.LatestOplogTime())
	}
	if op := last.Lookup("op").StringValue(); op != "i" || last.Lookup("ns").StringValue() != "a.b" {
		t.Fatalf("last oplog entry %v", last)
	}
}

func TestBulkWriteDistinctAggregate(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("ledger")
	res, err := coll.BulkWrite(ctx, []mongo.WriteModel{
		mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: 1}, {Key: "acct", Value: "a"}, {Key: "amt", Value: int64(10)}}),
		mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: 2}, {Key: "acct", Value: "b"}, {Key: "amt", Value: int64(5)}}),
		mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: 3}, {Key: "acct", Value: "a"}, {Key: "amt", Value: int64(7)}}),
		mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: 4}}).SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "acct", Value: "c"}, {Key: "amt", Value: int64(1)}}}}).SetUpsert(true),
		mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: 2}}).SetReplacement(bson.D{{Key: "acct", Value: "b"}, {Key: "amt", Value: int64(6)}}),
		mongo.NewDeleteManyModel().SetFilter(bson.D{{Key: "acct", Value: "zzz"}}),
	}, options.BulkWrite().SetOrdered(false))
	if err != nil {
		t.Fatal(err)
	}
	if res.InsertedCount != 3 || res.UpsertedCount != 1 || res.ModifiedCount != 1 || res.MatchedCount != 1 || res.DeletedCount != 0 {
		t.Fatalf("bulk result %+v", res)
	}
	var vals []string
	err = coll.Distinct(ctx, "acct", bson.D{}).Decode(&vals)
	if err != nil || fmt.Sprint(vals) != "[a b c]" {
		t.Fatalf("distinct %v %v", vals, err)
	}
	cur, err := coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "amt", Value: bson.D{{Key: "$gte", Value: 5}}}}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$acct"}, {Key: "total", Value: bson.D{{Key: "$sum", Value: "$amt"}}}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
		{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []bson.M
	if err := cur.All(ctx, &out); err != nil {
		t.Fatal(err)
	}
	// $sum of int32 and int64 amounts is an int64 and a count an int32
	// (docs: $sum, "Behavior: result type").
	if len(out) != 2 || out[0]["_id"] != "a" || out[0]["n"] != int32(2) || out[0]["total"] != int64(17) ||
		out[1]["_id"] != "b" || out[1]["n"] != int32(1) || out[1]["total"] != int64(6) {
		t.Fatalf("aggregate %v", out)
	}
}
