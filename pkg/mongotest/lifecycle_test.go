package mongotest

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// csReplyCursor is the cursor part of an aggregate/getMore reply.
type csReplyCursor struct {
	ID         int64      `bson:"id"`
	FirstBatch []bson.Raw `bson:"firstBatch"`
	NextBatch  []bson.Raw `bson:"nextBatch"`
	PBRT       bson.Raw   `bson:"postBatchResumeToken"`
}

// rawChangeStream opens a change stream on db d with the raw aggregate
// command (no driver change stream logic) and returns its cursor id.
func rawChangeStream(t *testing.T, db *mongo.Database, stages ...bson.D) int64 {
	t.Helper()
	pipeline := bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}
	for _, st := range stages {
		pipeline = append(pipeline, st)
	}
	var reply struct{ Cursor csReplyCursor }
	err := db.RunCommand(testCtx(t), bson.D{{Key: "aggregate", Value: 1}, {Key: "pipeline", Value: pipeline}, {Key: "cursor", Value: bson.D{}}}).Decode(&reply)
	if err != nil {
		t.Fatalf("aggregate $changeStream: %v", err)
	}
	if reply.Cursor.ID == 0 {
		t.Fatal("aggregate $changeStream: cursor id 0")
	}
	return reply.Cursor.ID
}

// rawGetMore runs one getMore on a database change stream cursor.
func rawGetMore(t *testing.T, db *mongo.Database, id int64) csReplyCursor {
	t.Helper()
	var reply struct{ Cursor csReplyCursor }
	err := db.RunCommand(testCtx(t), bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "$cmd.aggregate"}, {Key: "maxTimeMS", Value: int64(50)}}).Decode(&reply)
	if err != nil {
		t.Fatalf("getMore: %v", err)
	}
	return reply.Cursor
}

// drainStream reads every event the stream has now: it stops once the
// cursor is closed, or after a getMore returned nothing. (The first TryNext
// after Watch may return false without a round trip: the driver first
// hands out the aggregate's empty first batch.)
func drainStream(t *testing.T, cs *mongo.ChangeStream) []bson.Raw {
	t.Helper()
	ctx := testCtx(t)
	var out []bson.Raw
	for misses := 0; misses < 2; {
		if cs.TryNext(ctx) {
			out = append(out, append(bson.Raw(nil), cs.Current...))
			misses = 0
			continue
		}
		if err := cs.Err(); err != nil {
			t.Fatalf("change stream: %v", err)
		}
		if cs.ID() == 0 {
			break
		}
		misses++
	}
	return out
}

func opTypes(evs []bson.Raw) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i], _ = ev.Lookup("operationType").StringValueOK()
	}
	return out
}

// tokenTime decodes the cluster time at the head of a resume token's _data
// (0x82, then big-endian seconds and increment), the layout pkg/oplog reads.
func tokenTime(t *testing.T, tok bson.Raw) (sec, inc uint32) {
	t.Helper()
	data, ok := tok.Lookup("_data").StringValueOK()
	if !ok {
		t.Fatalf("token %v has no _data string", tok)
	}
	b, err := hex.DecodeString(data)
	if err != nil || len(b) < 9 || b[0] != 0x82 {
		t.Fatalf("token _data %q does not start with 0x82 and a timestamp", data)
	}
	return binary.BigEndian.Uint32(b[1:5]), binary.BigEndian.Uint32(b[5:9])
}

// TestDropDatabaseUserMatch reproduces row 1 of issue 10 with raw commands:
// a database stream whose $match is on ns.coll (the tailer's filter) gets
// the drop of the matched collection but neither dropDatabase (ns has no
// coll) nor invalidate (no ns); the server still closes the cursor and the
// reply's postBatchResumeToken is the invalidate's token, which an
// unfiltered stream on the same database returns as the invalidate's _id.
func TestDropDatabaseUserMatch(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	db := c.Database("d")
	if _, err := db.Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("other").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	filtered := rawChangeStream(t, db, bson.D{{Key: "$match", Value: bson.D{{Key: "ns.coll", Value: bson.D{{Key: "$in", Value: bson.A{"c"}}}}}}})
	all := rawChangeStream(t, db)
	if err := db.Drop(ctx); err != nil {
		t.Fatal(err)
	}

	unf := rawGetMore(t, db, all)
	if got := strings.Join(opTypes(unf.NextBatch), ","); got != "drop,drop,dropDatabase,invalidate" || unf.ID != 0 {
		t.Fatalf("unfiltered stream: events %s, cursor id %d; want drop,drop,dropDatabase,invalidate and id 0", got, unf.ID)
	}
	dropDB, inv := unf.NextBatch[2], unf.NextBatch[3]
	if ns := dropDB.Lookup("ns").Document(); ns.String() != `{"db": "d"}` {
		t.Fatalf("dropDatabase ns = %s, want {db: d} only", ns)
	}
	if _, err := inv.LookupErr("ns"); err == nil {
		t.Fatalf("invalidate has an ns: %s", inv)
	}
	for _, f := range []string{"_id", "operationType", "clusterTime", "wallTime"} {
		if _, err := inv.LookupErr(f); err != nil {
			t.Fatalf("invalidate lacks %s: %s", f, inv)
		}
	}
	invTok := inv.Lookup("_id").Document()
	if !bytesEqual(unf.PBRT, invTok) {
		t.Fatalf("unfiltered postBatchResumeToken %s, want the invalidate token %s", unf.PBRT, invTok)
	}
	// The invalidate's token keeps the real layout: its time is the
	// dropDatabase's cluster time.
	ts := dropDB.Lookup("clusterTime")
	wantT, wantI := ts.Timestamp()
	if gotT, gotI := tokenTime(t, invTok); gotT != wantT || gotI != wantI {
		t.Fatalf("invalidate token time %d.%d, want the dropDatabase time %d.%d", gotT, gotI, wantT, wantI)
	}

	f := rawGetMore(t, db, filtered)
	if got := strings.Join(opTypes(f.NextBatch), ","); got != "drop" || f.ID != 0 {
		t.Fatalf("filtered stream: events %q, cursor id %d; want only the drop of d.c and id 0", got, f.ID)
	}
	if coll, _ := f.NextBatch[0].Lookup("ns", "coll").StringValueOK(); coll != "c" {
		t.Fatalf("filtered drop event %s, want ns.coll c", f.NextBatch[0])
	}
	if !bytesEqual(f.PBRT, invTok) {
		t.Fatalf("filtered postBatchResumeToken %s, want the invalidate token %s", f.PBRT, invTok)
	}
	// The cursor is gone.
	err := db.RunCommand(ctx, bson.D{{Key: "getMore", Value: filtered}, {Key: "collection", Value: "$cmd.aggregate"}}).Err()
	assertCode(t, err, int(codeCursorNotFound))
}

// TestDriverAfterInvalidateClose shows what the Go driver makes of a stream
// closed by an invalidate the user's pipeline filtered out: TryNext returns
// false with Err() nil and ID() 0, now and on every later call, so a loop
// that treats "false, nil" as idle spins for ever. When the last batch had
// events, ResumeToken() is the invalidate token (the batch's
// postBatchResumeToken); when it was empty, the driver leaves ResumeToken()
// where it was (mongo/change_stream.go, loopNext skips
// updatePbrtFromCommand once the cursor id is 0).
func TestDriverAfterInvalidateClose(t *testing.T) {
	tests := []struct {
		name       string
		match      bson.D
		wantEvents string
		// wantInvalidateToken: ResumeToken() after the close is the
		// invalidate token; otherwise it is the last token before the drop.
		wantInvalidateToken bool
	}{
		{"match on ns.coll keeps the drop", bson.D{{Key: "ns.coll", Value: bson.D{{Key: "$in", Value: bson.A{"c"}}}}}, "insert,drop", true},
		{"match on inserts only", bson.D{{Key: "operationType", Value: "insert"}}, "insert", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t)
			c := connect(t, s)
			ctx := testCtx(t)
			db := c.Database("d")
			all, err := db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(20*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer all.Close(ctx)
			cs, err := db.Watch(ctx, mongo.Pipeline{{{Key: "$match", Value: tt.match}}}, options.ChangeStream().SetMaxAwaitTime(20*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close(ctx)
			if _, err := db.Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
				t.Fatal(err)
			}
			// Read the insert before the drop, so that the drop comes in a
			// batch of its own.
			ev := next(t, cs, 5*time.Second)
			got := []string{ev.OperationType}
			before := append(bson.Raw(nil), cs.ResumeToken()...)
			if err := db.Drop(ctx); err != nil {
				t.Fatal(err)
			}
			got = append(got, opTypes(drainStream(t, cs))...)
			if g := strings.Join(got, ","); g != tt.wantEvents {
				t.Fatalf("events %s, want %s", g, tt.wantEvents)
			}
			for i := 0; i < 3; i++ {
				if cs.TryNext(ctx) || cs.Err() != nil || cs.ID() != 0 {
					t.Fatalf("TryNext #%d after the close: want false, Err nil, ID 0; got Err %v, ID %d", i, cs.Err(), cs.ID())
				}
			}
			var inv bson.Raw
			for _, ev := range drainStream(t, all) {
				if op, _ := ev.Lookup("operationType").StringValueOK(); op == "invalidate" {
					inv = ev.Lookup("_id").Document()
				}
			}
			if inv == nil || all.ID() != 0 {
				t.Fatalf("unfiltered stream: no invalidate (cursor id %d, err %v)", all.ID(), all.Err())
			}
			want := before
			if tt.wantInvalidateToken {
				want = inv
			}
			if !bytesEqual(cs.ResumeToken(), want) {
				t.Fatalf("ResumeToken() after the close = %s, want %s (invalidate token %s)", cs.ResumeToken(), want, inv)
			}
		})
	}
}

// TestResumeFromInvalidate: resumeAfter an invalidate token is refused with
// InvalidResumeToken (260, no error label); startAfter it starts after the
// invalidate and is not invalidated again; resumeAfter the invalidating
// event's own token replays the invalidate.
func TestResumeFromInvalidate(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	db := c.Database("d")
	cs, err := db.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := db.Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	var dropDBTok, invTok bson.Raw
	for _, want := range []string{"insert", "drop", "dropDatabase", "invalidate"} {
		ev := next(t, cs, 5*time.Second)
		if ev.OperationType != want {
			t.Fatalf("got %s, want %s", ev.raw, want)
		}
		switch want {
		case "dropDatabase":
			dropDBTok = ev.ID
		case "invalidate":
			invTok = ev.ID
		}
	}

	_, err = db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(invTok))
	assertCode(t, err, int(codeInvalidResumeToken))
	var se mongo.ServerError
	if errors.As(err, &se) && (se.HasErrorLabel("ResumableChangeStreamError") || se.HasErrorLabel("NonResumableChangeStreamError")) {
		t.Fatalf("260 must carry no change stream label: %v", err)
	}

	again, err := db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(dropDBTok))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close(ctx)
	if ev := next(t, again, 5*time.Second); ev.OperationType != "invalidate" || !bytesEqual(ev.ID, invTok) {
		t.Fatalf("resumeAfter the dropDatabase token: got %s, want the same invalidate", ev.raw)
	}

	after, err := db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAfter(invTok).SetMaxAwaitTime(20*time.Millisecond))
	if err != nil {
		t.Fatalf("startAfter the invalidate token: %v", err)
	}
	defer after.Close(ctx)
	if _, err := db.Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	ev := next(t, after, 5*time.Second)
	if ev.OperationType != "insert" || evID(ev) != int32(2) || after.ID() == 0 {
		t.Fatalf("startAfter the invalidate: got %s (cursor %d), want the later insert on an open cursor", ev.raw, after.ID())
	}

	_, err = db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(dropDBTok).SetStartAfter(invTok))
	assertCode(t, err, 50865)
}

// TestInvalidationRules: which lifecycle events each kind of stream sees and
// which end it (change_stream_filter_helpers.cpp, buildOperationFilter and
// buildInvalidationFilter; document_source_change_stream_check_invalidate.cpp).
// The database holds d.a and d.x before each operation.
func TestInvalidationRules(t *testing.T) {
	rename := func(from, to string, dropTarget bool) func(*testing.T, *mongo.Client) {
		return func(t *testing.T, c *mongo.Client) {
			cmd := bson.D{{Key: "renameCollection", Value: from}, {Key: "to", Value: to}, {Key: "dropTarget", Value: dropTarget}}
			if err := c.Database("admin").RunCommand(testCtx(t), cmd).Err(); err != nil {
				t.Fatalf("renameCollection %s -> %s: %v", from, to, err)
			}
		}
	}
	drop := func(coll string) func(*testing.T, *mongo.Client) {
		return func(t *testing.T, c *mongo.Client) {
			if err := c.Database("d").Collection(coll).Drop(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
	dropDB := func(t *testing.T, c *mongo.Client) {
		if err := c.Database("d").Drop(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		stream string // "coll" (d.a), "db" (d) or "cluster"
		name   string
		op     func(*testing.T, *mongo.Client)
		want   string // events, each as operationType(ns[->to])
		closed bool
	}{
		{"coll", "drop", drop("a"), "drop(d.a),invalidate", true},
		{"coll", "drop of another collection", drop("x"), "", false},
		{"coll", "rename away", rename("d.a", "d.b", false), "rename(d.a->d.b),invalidate", true},
		{"coll", "rename onto it", rename("d.x", "d.a", true), "rename(d.x->d.a),invalidate", true},
		{"coll", "dropDatabase", dropDB, "drop(d.a),invalidate", true},
		{"db", "drop", drop("a"), "drop(d.a)", false},
		{"db", "rename", rename("d.a", "d.b", false), "rename(d.a->d.b)", false},
		{"db", "rename with dropTarget: no separate drop", rename("d.x", "d.a", true), "rename(d.x->d.a)", false},
		{"db", "dropDatabase", dropDB, "drop(d.a),drop(d.x),dropDatabase(d),invalidate", true},
		{"cluster", "rename", rename("d.a", "d.b", false), "rename(d.a->d.b)", false},
		{"cluster", "dropDatabase", dropDB, "drop(d.a),drop(d.x),dropDatabase(d)", false},
	}
	for _, tt := range tests {
		t.Run(tt.stream+"/"+tt.name, func(t *testing.T) {
			s := startServer(t)
			c := connect(t, s)
			ctx := testCtx(t)
			for _, coll := range []string{"a", "x"} {
				if _, err := c.Database("d").Collection(coll).InsertOne(ctx, bson.D{{Key: "_id", Value: coll}}); err != nil {
					t.Fatal(err)
				}
			}
			o := options.ChangeStream().SetMaxAwaitTime(20 * time.Millisecond)
			var cs *mongo.ChangeStream
			var err error
			switch tt.stream {
			case "coll":
				cs, err = c.Database("d").Collection("a").Watch(ctx, mongo.Pipeline{}, o)
			case "db":
				cs, err = c.Database("d").Watch(ctx, mongo.Pipeline{}, o)
			default:
				cs, err = c.Watch(ctx, mongo.Pipeline{}, o)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close(ctx)
			tt.op(t, c)
			var got []string
			for _, ev := range drainStream(t, cs) {
				got = append(got, describeEvent(ev))
			}
			if g := strings.Join(got, ","); g != tt.want {
				t.Fatalf("events %q, want %q", g, tt.want)
			}
			if closed := cs.ID() == 0; closed != tt.closed {
				t.Fatalf("cursor closed = %v, want %v", closed, tt.closed)
			}
		})
	}
}

// describeEvent renders operationType(db.coll[->db.coll]); dropDatabase
// shows (db), invalidate (which must have no ns) nothing.
func describeEvent(ev bson.Raw) string {
	op, _ := ev.Lookup("operationType").StringValueOK()
	ns, err := ev.LookupErr("ns")
	if err != nil {
		return op
	}
	db, _ := ns.Document().Lookup("db").StringValueOK()
	name := db
	if coll, ok := ns.Document().Lookup("coll").StringValueOK(); ok {
		name += "." + coll
	}
	if to, err := ev.LookupErr("to"); err == nil {
		tdb, _ := to.Document().Lookup("db").StringValueOK()
		tcoll, _ := to.Document().Lookup("coll").StringValueOK()
		name += fmt.Sprintf("->%s.%s", tdb, tcoll)
	}
	return op + "(" + name + ")"
}

// TestInvalidateInFullBatch: when the batch is full as the invalidate is
// produced, the cursor stays open and the next getMore closes it with an
// empty batch and the invalidate token as postBatchResumeToken (getMore
// stops pulling once batchSize results are in: getmore_cmd.cpp,
// FindCommon::enoughForGetMore; the ChangeStreamInvalidated exception comes
// on the next pull).
func TestInvalidateInFullBatch(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	db := c.Database("d")
	if _, err := db.Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	var agg struct{ Cursor csReplyCursor }
	if err := db.RunCommand(ctx, bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}}, {Key: "cursor", Value: bson.D{}}}).Decode(&agg); err != nil {
		t.Fatal(err)
	}
	if err := db.Collection("c").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	getMore := func() csReplyCursor {
		var r struct{ Cursor csReplyCursor }
		if err := db.RunCommand(ctx, bson.D{{Key: "getMore", Value: agg.Cursor.ID}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: int32(1)}, {Key: "maxTimeMS", Value: int64(50)}}).Decode(&r); err != nil {
			t.Fatalf("getMore: %v", err)
		}
		return r.Cursor
	}
	steps := []struct {
		want   string
		closed bool
	}{{"drop", false}, {"invalidate", false}, {"", true}}
	var invTok bson.Raw
	for i, st := range steps {
		b := getMore()
		if got := strings.Join(opTypes(b.NextBatch), ","); got != st.want || (b.ID == 0) != st.closed {
			t.Fatalf("getMore #%d: events %q, cursor id %d; want %q, closed %v", i, got, b.ID, st.want, st.closed)
		}
		if st.want == "invalidate" {
			invTok = b.NextBatch[0].Lookup("_id").Document()
		}
		if st.closed && !bytesEqual(b.PBRT, invTok) {
			t.Fatalf("closing getMore: postBatchResumeToken %s, want the invalidate token %s", b.PBRT, invTok)
		}
	}
}
