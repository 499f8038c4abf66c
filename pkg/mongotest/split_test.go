package mongotest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// startVersion starts a server reporting version v.
func startVersion(t *testing.T, v string) *Server {
	t.Helper()
	s, err := New(Options{Version: v})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestBuildInfoVersion(t *testing.T) {
	for _, v := range []string{"", "6.0.9", "8.0.4"} {
		s := startVersion(t, v)
		c := connect(t, s)
		raw, err := c.Database("admin").RunCommand(testCtx(t), bson.D{{Key: "buildInfo", Value: 1}}).Raw()
		if err != nil {
			t.Fatal(err)
		}
		want := v
		if want == "" {
			want = "7.0.0"
		}
		if got := raw.Lookup("version").StringValue(); got != want {
			t.Fatalf("version %q, want %q", got, want)
		}
		arr, _ := raw.Lookup("versionArray").Array().Values()
		parts := strings.Split(want, ".")
		for i, p := range parts {
			if got := arr[i].Int32(); bsonInt(p) != got {
				t.Fatalf("versionArray %v for %s", arr, want)
			}
		}
	}
	if _, err := New(Options{Version: "seven"}); err == nil {
		t.Fatal("a malformed Options.Version was accepted")
	}
}

func bsonInt(s string) int32 {
	var n int32
	for _, r := range s {
		n = n*10 + int32(r-'0')
	}
	return n
}

// bigDoc is {_id: id, big: <n bytes>}.
func bigDoc(id any, n int) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "big", Value: strings.Repeat("x", n)}}
}

// largeEventSetup creates d.c with images, a 10 MB document, and returns
// the collection; the caller opens a stream and then calls update, whose
// event (pre- and post-image) is about 20 MB.
func largeEventSetup(t *testing.T, c *mongo.Client) (coll *mongo.Collection, update func()) {
	t.Helper()
	ctx := testCtx(t)
	if err := c.Database("d").CreateCollection(ctx, "c", options.CreateCollection().SetChangeStreamPreAndPostImages(imagesOn)); err != nil {
		t.Fatal(err)
	}
	coll = c.Database("d").Collection("c")
	if _, err := coll.InsertOne(ctx, bigDoc(1, 10<<20)); err != nil {
		t.Fatal(err)
	}
	return coll, func() {
		if _, err := coll.UpdateByID(ctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 1}}}}); err != nil {
			t.Fatal(err)
		}
	}
}

func withImages() *options.ChangeStreamOptionsBuilder {
	return options.ChangeStream().SetFullDocument(options.Required).
		SetFullDocumentBeforeChange(options.Required).SetMaxAwaitTime(50 * time.Millisecond)
}

// TestLargeEventFails: without the split stage an event over 16 MB + 16
// KB fails the stream with BSONObjectTooLarge (10334) and no resumable
// label, every time the stream reaches it.
func TestLargeEventFails(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll, update := largeEventSetup(t, c)
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, withImages())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	tok := cs.ResumeToken()
	update()
	if cs.Next(ctx) {
		t.Fatalf("got an event of %d bytes, want BSONObjectTooLarge", len(cs.Current))
	}
	check := func(what string, err error) {
		t.Helper()
		var se mongo.ServerError
		if !errors.As(err, &se) || !se.HasErrorCode(10334) || se.HasErrorLabel("ResumableChangeStreamError") {
			t.Fatalf("%s: %v, want 10334 without a resumable label", what, err)
		}
	}
	check("getMore", cs.Err())
	_ = cs.Close(ctx)
	// Resuming before the event hits it again (in the aggregate's first
	// batch).
	_, err = coll.Watch(ctx, mongo.Pipeline{}, withImages().SetResumeAfter(tok))
	check("resumed aggregate", err)
	// A stream that does not ask for the images gets the event.
	plain, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(tok))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	if ev := next(t, plain, 5*time.Second); ev.OperationType != "update" {
		t.Fatalf("plain stream: %v", ev.raw)
	}
}

// TestInsertTooLarge: a document over 16 MB is refused (the driver
// refuses it before sending; sent raw, the emulator answers 10334).
func TestInsertTooLarge(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	if _, err := coll.InsertOne(ctx, bigDoc(1, maxBSONSize)); err == nil {
		t.Fatal("driver sent a 16 MB+ document")
	}
	err := c.Database("d").RunCommand(ctx, bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bigDoc(1, maxBSONSize)}}}).Err()
	var we mongo.WriteException
	if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Code != 10334 {
		t.Fatalf("insert of a 16 MB+ document: %v, want write error 10334", err)
	}
}

// splitStage is the pipeline with $changeStreamSplitLargeEvent.
var splitStage = mongo.Pipeline{{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}}}

// TestSplitLargeEvent: with $changeStreamSplitLargeEvent the 20 MB event
// comes as fragments that reassemble into it; a stream resumed from a
// fragment's token continues with the next fragment; small events are
// unchanged.
func TestSplitLargeEvent(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll, update := largeEventSetup(t, c)
	cs, err := coll.Watch(ctx, splitStage, withImages())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	update()
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	var frags []bson.Raw
	for len(frags) < 2 {
		ev := next(t, cs, 5*time.Second)
		if len(ev.raw) > maxSplitEventSize {
			t.Fatalf("fragment of %d bytes", len(ev.raw))
		}
		frags = append(frags, ev.raw)
	}
	fields := map[string]bson.RawValue{}
	for i, f := range frags {
		se := f.Lookup("splitEvent").Document()
		if n, of := se.Lookup("fragment").Int32(), se.Lookup("of").Int32(); n != int32(i+1) || of != 2 {
			t.Fatalf("fragment %d: splitEvent %v, want {fragment: %d, of: 2}", i, se, i+1)
		}
		elems, _ := f.Elements()
		for _, e := range elems[2:] {
			if _, dup := fields[e.Key()]; dup {
				t.Fatalf("field %s in two fragments", e.Key())
			}
			fields[e.Key()] = e.Value()
		}
	}
	if bytes.Equal(frags[0].Lookup("_id").Value, frags[1].Lookup("_id").Value) {
		t.Fatal("fragments share a resume token")
	}
	for _, k := range []string{"operationType", "clusterTime", "ns", "documentKey", "updateDescription", "fullDocument", "fullDocumentBeforeChange"} {
		if _, ok := fields[k]; !ok {
			t.Fatalf("field %s missing from the fragments", k)
		}
	}
	if got := len(fields["fullDocument"].Document().Lookup("big").StringValue()); got != 10<<20 {
		t.Fatalf("reassembled fullDocument.big has %d bytes", got)
	}
	// The next, small event comes whole.
	if ev := next(t, cs, 5*time.Second); ev.OperationType != "insert" || ev.raw.Lookup("splitEvent").Type != 0 {
		t.Fatalf("small event after the split one: %v", ev.raw)
	}
	// Resuming from the first fragment's token returns the second.
	tok := frags[0].Lookup("_id").Document()
	rs, err := coll.Watch(ctx, splitStage, withImages().SetResumeAfter(tok))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close(ctx)
	if ev := next(t, rs, 5*time.Second); !bytes.Equal(ev.raw, frags[1]) {
		t.Fatalf("resumed from fragment 1: got %.200v, want fragment 2", ev.raw)
	}
	// Without the stage the fragment's token cannot be resumed.
	bad, err := coll.Watch(ctx, mongo.Pipeline{}, withImages().SetResumeAfter(tok))
	var se mongo.ServerError
	if err == nil {
		defer bad.Close(ctx)
		if bad.Next(ctx) {
			t.Fatal("resumed a fragment token without the split stage")
		}
		err = bad.Err()
	}
	if !errors.As(err, &se) || !se.HasErrorCode(int(codeChangeStreamFatal)) {
		t.Fatalf("fragment token without the stage: %v, want 280", err)
	}
}

// TestSplitStageValidation: the stage exists from 7.0 and 6.0.9, must be
// last and takes an empty object.
func TestSplitStageValidation(t *testing.T) {
	tests := []struct {
		version  string
		pipeline mongo.Pipeline
		code     int32
	}{
		{"7.0.0", splitStage, 0},
		{"6.0.9", splitStage, 0},
		{"8.0.0", splitStage, 0},
		{"6.0.8", splitStage, 40324},
		{"5.0.20", splitStage, 40324},
		{"7.0.0", mongo.Pipeline{splitStage[0], {{Key: "$match", Value: bson.D{}}}}, 7182802},
		{"7.0.0", mongo.Pipeline{{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{{Key: "x", Value: 1}}}}}, 7182800},
	}
	for _, tt := range tests {
		s := startVersion(t, tt.version)
		c := connect(t, s)
		cs, err := c.Database("d").Collection("c").Watch(testCtx(t), tt.pipeline)
		if err == nil {
			_ = cs.Close(testCtx(t))
		}
		var ce mongo.CommandError
		switch {
		case tt.code == 0 && err != nil:
			t.Fatalf("%s %v: %v", tt.version, tt.pipeline, err)
		case tt.code != 0 && (!errors.As(err, &ce) || ce.Code != tt.code):
			t.Fatalf("%s %v: %v, want code %d", tt.version, tt.pipeline, err, tt.code)
		}
	}
}

// TestSplitEventUnits checks splitEvent's packing and its refusal of a
// field that cannot fit a fragment, on synthetic events.
func TestSplitEventUnits(t *testing.T) {
	tok := resumeToken{seq: 7}
	ev := func(sizes map[string]int) bsoncore.Document {
		b := bsoncore.NewDocumentBuilder().AppendDocument("_id", tok.doc())
		for _, k := range []string{"a", "b", "c"} {
			if n, ok := sizes[k]; ok {
				b.AppendString(k, strings.Repeat("y", n))
			}
		}
		return b.Build()
	}
	tests := []struct {
		name  string
		sizes map[string]int
		want  []string // fields of each fragment after _id and splitEvent
		code  int32
	}{
		{"two big", map[string]int{"a": 10 << 20, "b": 9 << 20, "c": 5}, []string{"c,b", "a"}, 0},
		{"three big", map[string]int{"a": 9 << 20, "b": 9 << 20, "c": 9 << 20}, []string{"a", "b", "c"}, 0},
		{"a field over the limit", map[string]int{"a": maxSplitEventSize, "c": 5}, nil, codeSplitFragmentTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frags, err := splitEvent(ev(tt.sizes), tok)
			if tt.code != 0 {
				var ce *cmdError
				if !errors.As(err, &ce) || ce.code != tt.code {
					t.Fatalf("err %v, want code %d", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, f := range frags {
				if len(f.doc) > maxSplitEventSize-len(tok.doc()) {
					t.Fatalf("fragment %d has %d bytes", i, len(f.doc))
				}
				if f.tok.fragment != i+1 {
					t.Fatalf("fragment %d token %+v", i, f.tok)
				}
				elems, _ := f.doc.Elements()
				var names []string
				for _, e := range elems[2:] {
					names = append(names, e.Key())
				}
				got = append(got, strings.Join(names, ","))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("fragments %q, want %q", got, tt.want)
			}
		})
	}
}
