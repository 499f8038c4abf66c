package tailer_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/tailer"
)

// rig is a Mongo test server and an embedded JetStream with the streams
// declared, for tailers of database "shop", collection "orders".
type rig struct {
	t      *testing.T
	ctx    context.Context
	client *mongo.Client
	js     jetstream.JetStream
	sc     bus.StreamsConfig
	store  *checkpoint.KVStore
	coll   *mongo.Collection
	start  config.StartPoint
}

const (
	rigInterval = 50 * time.Millisecond
	rigTakeover = 500 * time.Millisecond
)

// natsJS starts an embedded server with the declared streams and bucket.
func natsJS(t *testing.T, maxBytes int64) (jetstream.JetStream, bus.StreamsConfig) {
	t.Helper()
	_, js := bustest.Start(t)
	sc := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: 2 * time.Minute, MaxAge: 24 * time.Hour, MaxBytes: maxBytes, CheckpointBucket: "ckpt"}
	if err := bus.Ensure(context.Background(), js, sc); err != nil {
		t.Fatal(err)
	}
	return js, sc
}

func newRig(t *testing.T, maxBytes int64) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	srv := mongotest.Start(t)
	return newRigOn(t, ctx, srv, maxBytes)
}

// newRigOn is newRig on a given server.
func newRigOn(t *testing.T, ctx context.Context, srv *mongotest.Server, maxBytes int64) *rig {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	js, sc := natsJS(t, maxBytes)
	store, err := checkpoint.NewKVStore(ctx, js, sc.CheckpointBucket, checkpoint.Key("shop"))
	if err != nil {
		t.Fatal(err)
	}
	at := srv.LatestOplogTime()
	return &rig{t: t, ctx: ctx, client: client, js: js, sc: sc, store: store,
		coll: client.Database("shop").Collection("orders"), start: config.StartPoint{T: at.T, I: at.I}}
}

func (r *rig) tailer(owner string, m tailer.Metrics, log *zap.Logger) *tailer.Tailer {
	return r.tailerWith(owner, m, log, nil)
}

// tailerWith is tailer with the configuration changed by edit (nil: none).
func (r *rig) tailerWith(owner string, m tailer.Metrics, log *zap.Logger, edit func(*tailer.Config)) *tailer.Tailer {
	if log == nil {
		log = zap.NewNop()
	}
	cfg := tailer.Config{Database: "shop", Collections: []string{"orders"}, Start: r.start,
		BatchSize: 100, MaxAwait: rigInterval, MaxInFlight: 256, CheckpointInterval: rigInterval, Streams: r.sc,
		Owner: owner, StandbyTakeover: rigTakeover}
	if edit != nil {
		edit(&cfg)
	}
	return tailer.New(r.client, r.js, r.store, cfg, log, m)
}

// run starts tl; the returned stop cancels it and checks it ended cleanly
// (also at cleanup).
func (r *rig) run(tl *tailer.Tailer) (stop func()) {
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					r.t.Errorf("tailer %s: %v", tl.Owner(), err)
				}
			case <-time.After(30 * time.Second):
				r.t.Errorf("tailer %s did not stop within 30s", tl.Owner())
			}
		})
	}
	r.t.Cleanup(stop)
	return stop
}

func (r *rig) insert(n int, size int) {
	r.t.Helper()
	docs := make([]any, n)
	for i := range docs {
		docs[i] = bson.D{{Key: "n", Value: i}, {Key: "pad", Value: strings.Repeat("p", size)}}
	}
	if _, err := r.coll.InsertMany(r.ctx, docs); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) checkpoint() (*checkpoint.Checkpoint, uint64) {
	r.t.Helper()
	cp, rev, err := r.store.Load(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return cp, rev
}

func (r *rig) streamState() jetstream.StreamState {
	r.t.Helper()
	s, err := r.js.Stream(r.ctx, r.sc.Stream)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return info.State
}

// eventually waits for cond, polling, and fails the test naming what did
// not happen within timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// counts is what a recorder was told.
type counts struct {
	read, published  int
	standby          []string // holder per Standby(true), "-" per Standby(false)
	fullOn, fullOff  int
	checkpointsSaved int
	retries, alive   int
	// failing is the last Failing report: "" (none or recovered),
	// "since" (failing, not yet past failing_after) or "over".
	failing      string
	failingCause string
	// lease is "held" or "-" per Lease report; takeovers are TookOver
	// reports; lapses counts LeaseLapsed.
	lease     []string
	takeovers []checkpoint.Takeover
	lapses    int
}

// recorder is a tailer.Metrics that remembers what it was told.
type recorder struct {
	mu sync.Mutex
	c  counts
}

func (r *recorder) do(f func(c *counts)) { r.mu.Lock(); f(&r.c); r.mu.Unlock() }

func (r *recorder) EventRead(string, event.Op) { r.do(func(c *counts) { c.read++ }) }
func (r *recorder) EventPublished(string)      { r.do(func(c *counts) { c.published++ }) }
func (r *recorder) CheckpointSaved(ct event.ClusterTime) {
	r.do(func(c *counts) { c.checkpointsSaved++ })
}
func (r *recorder) Retry() { r.do(func(c *counts) { c.retries++ }) }
func (r *recorder) Alive() { r.do(func(c *counts) { c.alive++ }) }
func (r *recorder) Standby(on bool, holder string) {
	if !on {
		holder = "-"
	}
	r.do(func(c *counts) { c.standby = append(c.standby, holder) })
}
func (r *recorder) StreamFull(full bool) {
	r.do(func(c *counts) {
		if full {
			c.fullOn++
		} else {
			c.fullOff++
		}
	})
}

func (r *recorder) Failing(since time.Time, over bool, cause string) {
	r.do(func(c *counts) {
		switch {
		case since.IsZero():
			c.failing = ""
		case over:
			c.failing = "over"
		default:
			c.failing = "since"
		}
		c.failingCause = cause
	})
}

func (r *recorder) Lease(held bool, since time.Time) {
	r.do(func(c *counts) {
		if held {
			c.lease = append(c.lease, "held")
		} else {
			c.lease = append(c.lease, "-")
		}
	})
}
func (r *recorder) TookOver(tk checkpoint.Takeover) {
	r.do(func(c *counts) { c.takeovers = append(c.takeovers, tk) })
}
func (r *recorder) LeaseLapsed() { r.do(func(c *counts) { c.lapses++ }) }

// counts returns a copy of what the recorder was told.
func (r *recorder) counts() counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.c
	c.standby = append([]string(nil), r.c.standby...)
	c.lease = append([]string(nil), r.c.lease...)
	c.takeovers = append([]checkpoint.Takeover(nil), r.c.takeovers...)
	return c
}

// lastStandby is the last Standby report: a holder, "-" (active) or ""
// (none yet).
func (r *recorder) lastStandby() string {
	c := r.counts()
	if len(c.standby) == 0 {
		return ""
	}
	return c.standby[len(c.standby)-1]
}
