package tailer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/tailer"
)

const bigID = "big-1"

// bigInsert creates shop.orders with pre- and post-images enabled (as a
// user would) and inserts a 10 MB document.
func (r *rig) bigInsert() {
	r.t.Helper()
	must(r.t, r.client.Database("shop").CreateCollection(r.ctx, "orders",
		options.CreateCollection().SetChangeStreamPreAndPostImages(bson.D{{Key: "enabled", Value: true}})))
	_, err := r.coll.InsertOne(r.ctx, bson.D{{Key: "_id", Value: bigID}, {Key: "pad", Value: strings.Repeat("a", 10<<20)}})
	must(r.t, err)
}

// bigUpdate replaces the 10 MB field of bigInsert's document: with both
// images and the update description the change event is about 30 MB,
// over MongoDB's 16 MB limit for a change event.
func (r *rig) bigUpdate() (after string) {
	r.t.Helper()
	after = strings.Repeat("b", 10<<20)
	_, err := r.coll.UpdateByID(r.ctx, bigID, bson.D{{Key: "$set", Value: bson.D{{Key: "pad", Value: after}}}})
	must(r.t, err)
	return after
}

func (r *rig) imagesTailer() *tailer.Tailer {
	return r.tailerWith("a", nil, nil, func(c *tailer.Config) {
		c.FullDocument, c.PreImages = tailer.FullDocumentPostImage, true
	})
}

// A change event over 16 MB on a server with $changeStreamSplitLargeEvent
// (7.0) arrives in fragments, is published as one event (through the large
// object store: it is over the bus's max_payload too) with both images
// intact, and the checkpoint passes it whole (issue 10 row 3).
func TestLargeEventSplitAndReassembled(t *testing.T) {
	r := newRig(t, -1)
	r.bigInsert()
	after := r.bigUpdate()
	stop := r.run(r.imagesTailer())
	eventually(t, 30*time.Second, "insert and update published", func() bool { return r.published() == 2 })
	stop()
	s, err := r.js.Stream(r.ctx, r.sc.Stream)
	must(t, err)
	raw, err := s.GetMsg(r.ctx, 2)
	must(t, err)
	data, err := bus.EventBytes(r.ctx, r.js, raw.Header, raw.Data)
	must(t, err)
	ev, err := event.Unmarshal(data)
	must(t, err)
	if ev.Op != event.OpUpdate || ev.Oversize != 0 {
		t.Fatalf("published %s (oversize %d), want the whole update", ev.Op, ev.Oversize)
	}
	if got, _ := ev.Doc.Lookup("pad").StringValueOK(); got != after {
		t.Fatalf("post-image pad is %d bytes, want the new 10 MB value", len(got))
	}
	if got, _ := ev.Pre.Lookup("pad").StringValueOK(); got != strings.Repeat("a", 10<<20) {
		t.Fatalf("pre-image pad is %d bytes, want the old 10 MB value", len(got))
	}
	cp, _ := r.checkpoint()
	if cp == nil || cp.Events != 2 {
		t.Fatalf("checkpoint %+v, want it past both events", cp)
	}
}

// Without $changeStreamSplitLargeEvent (a 6.0.5 server) the same event
// fails the stream with BSONObjectTooLarge (10334): the tailer stops with
// its own message naming the document and the recovery, instead of
// retrying the same event until the checkpoint leaves the oplog.
func TestLargeEventWithoutSplitStops(t *testing.T) {
	srv, err := mongotest.New(mongotest.Options{Version: "6.0.5"})
	must(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := newRigOn(t, ctx, srv, -1)
	r.bigInsert()
	done := make(chan error, 1)
	go func() { done <- r.imagesTailer().Run(ctx) }()
	eventually(t, 30*time.Second, "the insert published", func() bool { return r.published() == 1 })
	r.bigUpdate()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the tailer kept running after a 10334")
	}
	var se *tailer.StreamError
	if !errors.As(err, &se) || se.Code != tailer.CodeBSONObjectTooLarge || se.Split {
		t.Fatalf("want a *StreamError 10334 without split, got %T %v", err, err)
	}
	if msg := err.Error(); !strings.Contains(msg, bigID) || !strings.Contains(msg, "6.0.9") {
		t.Fatalf("message does not name the document %s and the upgrade: %s", bigID, msg)
	}
	if n := r.published(); n != 1 {
		t.Fatalf("%d events published, want the insert before the large update", n)
	}
	// A restart meets the same event and stops the same way (no loop).
	err2 := runUntil(t, ctx, r.imagesTailer(), 30*time.Second)
	if !errors.As(err2, &se) || se.Code != tailer.CodeBSONObjectTooLarge {
		t.Fatalf("restart: %v", err2)
	}
}
