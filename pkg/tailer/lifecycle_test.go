package tailer_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/tailer"
)

// runUntil runs tl until it returns (it must, within timeout) and returns
// its error.
func runUntil(t *testing.T, ctx context.Context, tl *tailer.Tailer, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	select {
	case err := <-done:
		if ctx.Err() != nil {
			t.Fatalf("tailer did not stop on its own within %s (err %v)", timeout, err)
		}
		return err
	case <-time.After(timeout + 30*time.Second):
		t.Fatalf("tailer did not return")
		return nil
	}
}

func (r *rig) published() uint64 { return r.streamState().Msgs }

// TestLifecycleStops: a drop of the watched collection, a rename onto it
// and a dropped database each stop the tailer with a *LifecycleError after
// every earlier change was published and checkpointed; a restart stops
// again at the same event with the same message (never a skip, never a
// retry loop).
func TestLifecycleStops(t *testing.T) {
	cases := []struct {
		name string
		do   func(r *rig)
		op   tailer.LifecycleOp
		want string
	}{
		{"drop", func(r *rig) { must(t, r.coll.Drop(r.ctx)) }, tailer.LifecycleDrop, "collection shop.orders was dropped"},
		{"rename onto", func(r *rig) {
			src := r.client.Database("shop").Collection("orders_rebuilt")
			_, err := src.InsertOne(r.ctx, bson.D{{Key: "n", Value: 99}})
			must(t, err)
			must(t, r.client.Database("admin").RunCommand(r.ctx, bson.D{{Key: "renameCollection", Value: "shop.orders_rebuilt"},
				{Key: "to", Value: "shop.orders"}, {Key: "dropTarget", Value: true}}).Err())
		}, tailer.LifecycleRenamedOnto, "collection shop.orders_rebuilt was renamed onto the replicated collection shop.orders"},
		{"rename away", func(r *rig) {
			must(t, r.client.Database("admin").RunCommand(r.ctx, bson.D{{Key: "renameCollection", Value: "shop.orders"},
				{Key: "to", Value: "shop.orders_old"}}).Err())
		}, tailer.LifecycleRenamed, "collection shop.orders was renamed to shop.orders_old"},
		{"drop database", func(r *rig) { must(t, r.client.Database("shop").Drop(r.ctx)) }, tailer.LifecycleDrop, `database "shop" was dropped`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, -1)
			r.insert(5, 10)
			tl := r.tailer("a", nil, nil)
			stop := r.run(tl)
			eventually(t, 10*time.Second, "5 events published", func() bool { return r.published() == 5 })
			stop()
			tc.do(r)
			var first string
			for run := 0; run < 2; run++ {
				err := runUntil(t, r.ctx, r.tailer("a", nil, nil), 20*time.Second)
				var le *tailer.LifecycleError
				if !errors.As(err, &le) || tailer.Classify(err) != fault.Fatal {
					t.Fatalf("run %d: want a fatal *LifecycleError, got %T %v", run, err, err)
				}
				if le.Events[0].Op != tc.op || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("run %d: stopped at %s: %v; want %s with %q", run, le.Events[0].Op, err, tc.op, tc.want)
				}
				if run == 0 {
					first = err.Error()
				} else if err.Error() != first {
					t.Fatalf("the restart stopped with another message:\n%s\nfirst:\n%s", err, first)
				}
				if n := r.published(); n != 5 {
					t.Fatalf("run %d: %d events published, want the 5 before the event", run, n)
				}
				cp, _ := r.checkpoint()
				if cp == nil || cp.Events != 5 || cp.StartAfter {
					t.Fatalf("run %d: checkpoint %+v; want it right after the 5 events", run, cp)
				}
			}
		})
	}
}

// TestLifecyclePassedOnceCovered: once a snapshot covers the dropped
// database, the tailer passes the drops, the dropDatabase and the
// invalidate, checkpoints the invalidate's token for startAfter, and
// streams the re-created collection; a restart neither loops on 260 nor
// stops again.
func TestLifecyclePassedOnceCovered(t *testing.T) {
	r := newRig(t, -1)
	r.insert(3, 10)
	var coveredAt atomic.Pointer[event.ClusterTime]
	covered := func(_ context.Context, colls []string, at event.ClusterTime) (string, bool, error) {
		c := coveredAt.Load()
		if c == nil || c.Compare(at) <= 0 {
			return "", false, nil
		}
		return "test snapshot", true, nil
	}
	mk := func() *tailer.Tailer {
		return r.tailerWith("a", nil, nil, func(c *tailer.Config) { c.Covered = covered })
	}
	must(t, r.client.Database("shop").Drop(r.ctx))
	if err := runUntil(t, r.ctx, mk(), 20*time.Second); !errors.As(err, new(*tailer.LifecycleError)) {
		t.Fatalf("want a *LifecycleError, got %v", err)
	}
	// The recovery: a (simulated) complete snapshot after the drop.
	_, err := r.coll.InsertOne(r.ctx, bson.D{{Key: "n", Value: 100}})
	must(t, err)
	later := event.ClusterTime{T: uint32(time.Now().Unix()) + 1}
	coveredAt.Store(&later)
	for run := 0; run < 2; run++ {
		stop := r.run(mk())
		want := uint64(4 + run)
		eventually(t, 15*time.Second, "the re-created collection's insert published", func() bool { return r.published() == want })
		stop()
		cp, _ := r.checkpoint()
		if cp == nil {
			t.Fatal("no checkpoint")
		}
		_, err := r.coll.InsertOne(r.ctx, bson.D{{Key: "n", Value: 101 + run}})
		must(t, err)
	}
}

// TestTopologyRefused: mongos and a standalone are refused before a change
// stream is opened.
func TestTopologyRefused(t *testing.T) {
	for _, topo := range []string{mongotest.TopologyMongos, mongotest.TopologyStandalone} {
		t.Run(topo, func(t *testing.T) {
			srv, err := mongotest.New(mongotest.Options{Topology: topo})
			must(t, err)
			t.Cleanup(func() { _ = srv.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r := newRigOn(t, ctx, srv, -1)
			r.start = config.StartPoint{Now: true}
			err = runUntil(t, ctx, r.tailer("a", nil, nil), 20*time.Second)
			var te *tailer.TopologyError
			if !errors.As(err, &te) || te.Kind != topo || !strings.Contains(err.Error(), "only replica sets are supported") {
				t.Fatalf("want a *TopologyError %s saying only replica sets are supported, got %v", topo, err)
			}
		})
	}
}

// TestImagesRequired: post_image refuses collections without
// changeStreamPreAndPostImages, naming the collMod; after it, the tailer
// starts.
func TestImagesRequired(t *testing.T) {
	r := newRig(t, -1)
	r.insert(1, 1)
	mk := func() *tailer.Tailer {
		return r.tailerWith("a", nil, nil, func(c *tailer.Config) { c.FullDocument = tailer.FullDocumentPostImage })
	}
	err := runUntil(t, r.ctx, mk(), 20*time.Second)
	var ie *tailer.ImagesError
	var fe *config.FieldError
	if !errors.As(err, &ie) || !errors.As(err, &fe) || fe.Field != "tailer.full_document" ||
		!strings.Contains(err.Error(), `runCommand({collMod: "orders", changeStreamPreAndPostImages: {enabled: true}})`) {
		t.Fatalf("want an *ImagesError (a config error) with the collMod, got %T %v", err, err)
	}
	must(t, r.client.Database("shop").RunCommand(r.ctx, bson.D{{Key: "collMod", Value: "orders"},
		{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}}).Err())
	stop := r.run(mk())
	eventually(t, 10*time.Second, "the insert published", func() bool { return r.published() == 1 })
	stop()
}

// TestFailingAfter: an error the tailer does not know is retried; past
// FailingAfter the tailer reports itself failing, and healthy again once a
// session works.
func TestFailingAfter(t *testing.T) {
	srv := mongotest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := newRigOn(t, ctx, srv, -1)
	srv.FailCommand("aggregate", 1000, 8000) // AtlasError: a code the tailer does not know
	rec := &recorder{}
	stop := r.run(r.tailerWith("a", rec, nil, func(c *tailer.Config) { c.FailingAfter = 300 * time.Millisecond }))
	eventually(t, 10*time.Second, "failing reported", func() bool { return rec.counts().failing == "over" })
	if c := rec.counts(); !strings.Contains(c.failingCause, "8000") && !strings.Contains(c.failingCause, "aggregate") {
		t.Fatalf("failing cause %q does not name the error", c.failingCause)
	}
	srv.ClearFailPoints()
	eventually(t, 20*time.Second, "recovered", func() bool { return rec.counts().failing == "" })
	stop()
}

// TestInvalidResumeTokenFatal: a checkpoint MongoDB refuses with 260 stops
// the tailer with its own message (no retry loop).
func TestInvalidResumeTokenFatal(t *testing.T) {
	r := newRig(t, -1)
	_, err := r.store.Save(r.ctx, &checkpoint.Checkpoint{Token: []byte(`{"_data":"00"}`)}, 0)
	must(t, err)
	err = runUntil(t, r.ctx, r.tailer("a", nil, nil), 20*time.Second)
	var se *tailer.StreamError
	if !errors.As(err, &se) || se.Code != tailer.CodeInvalidResumeToken {
		t.Fatalf("want a *StreamError 260, got %T %v", err, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var _ = options.Client
