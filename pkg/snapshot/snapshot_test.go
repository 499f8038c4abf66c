package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/oplog"
	"github.com/amanat/cdc/pkg/snapshot"
	"github.com/amanat/cdc/pkg/transform"
)

// world is a test server, an embedded JetStream and two mapped
// collections: parents, and kids that reference them.
type world struct {
	t       *testing.T
	ctx     context.Context
	srv     *mongotest.Server
	client  *mongo.Client
	js      jetstream.JetStream
	streams bus.StreamsConfig
	set     *transform.Set
	db      string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	w := &world{t: t, ctx: ctx, db: "snapdb"}
	w.srv = mongotest.Start(t)
	client, err := mongo.Connect(options.Client().ApplyURI(w.srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	w.client = client
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: -1, StoreDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, js, err := bus.Connect(ctx, emb.ClientURL(), "snapshot-test", 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w.js = js
	w.streams = bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: time.Minute, MaxAge: time.Hour, MaxBytes: -1, CheckpointBucket: "cdc_checkpoints"}
	if err := bus.Ensure(ctx, js, w.streams); err != nil {
		t.Fatal(err)
	}
	var ms []*transform.Mapping
	for _, y := range []string{
		"version: 1\ncollection: parents\ntable: parents\ncolumns:\n  - {column: name, field: name, type: text}\n",
		"version: 1\ncollection: kids\ntable: kids\ncolumns:\n  - {column: parent_id, field: parent, type: ref, ref: {collection: parents, missing: reject}}\n",
	} {
		m, err := transform.Parse([]byte(y), "test")
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	if w.set, err = transform.NewSet(ms...); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) cfg() snapshot.Config {
	return snapshot.Config{
		Database: w.db, Collections: []string{"kids", "parents"}, Replicated: []string{"kids", "parents"},
		BatchSize: 50, Streams: w.streams, ProgressBucket: "cdc_snapshots", TailerStart: config.StartPoint{Now: true},
	}
}

func (w *world) run(ctx context.Context, cfg snapshot.Config, d snapshot.Display) (readN int64, published int64, err error) {
	rep, err := snapshot.New(w.client, w.js, w.set, cfg, zaptest.NewLogger(w.t, zaptest.Level(zap.WarnLevel)), d).Run(ctx)
	return rep.Read, rep.Published, err
}

// seed inserts parents with _ids of several types (they sort by type
// bracket first) and kids referencing them; it returns the parents' ids
// in MongoDB's _id order and the number of kids.
func (w *world) seed(nParents, nKids int) int {
	w.t.Helper()
	var docs []any
	for i := 0; i < nParents; i++ {
		var id any
		switch i % 4 {
		case 0:
			id = int64(i)
		case 1:
			id = fmt.Sprintf("p-%05d", i)
		case 2:
			id = bson.NewObjectID()
		default:
			id = bson.NewDateTimeFromTime(time.Unix(int64(i), 0))
		}
		docs = append(docs, bson.D{{Key: "_id", Value: id}, {Key: "name", Value: fmt.Sprint("parent ", i)}})
	}
	if _, err := w.client.Database(w.db).Collection("parents").InsertMany(w.ctx, docs); err != nil {
		w.t.Fatal(err)
	}
	docs = docs[:0]
	for i := 0; i < nKids; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "parent", Value: bson.NewObjectID()}})
	}
	if _, err := w.client.Database(w.db).Collection("kids").InsertMany(w.ctx, docs); err != nil {
		w.t.Fatal(err)
	}
	return nKids
}

// streamEvents reads every message of the change stream, in order.
func (w *world) streamEvents() []*event.Event {
	w.t.Helper()
	s, err := w.js.Stream(w.ctx, w.streams.Stream)
	if err != nil {
		w.t.Fatal(err)
	}
	info, err := s.Info(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []*event.Event
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(w.ctx, seq)
		if err != nil {
			w.t.Fatal(err)
		}
		ev, err := event.Unmarshal(m.Data)
		if err != nil {
			w.t.Fatal(err)
		}
		if ev.ID != m.Header.Get(jetstream.MsgIDHeader) {
			w.t.Fatalf("Nats-Msg-Id %q != event id %q", m.Header.Get(jetstream.MsgIDHeader), ev.ID)
		}
		out = append(out, ev)
	}
	return out
}

func (w *world) checkpoint() *checkpoint.Checkpoint {
	w.t.Helper()
	store, err := checkpoint.NewKVStore(w.ctx, w.js, w.streams.CheckpointBucket, checkpoint.Key(w.db))
	if err != nil {
		w.t.Fatal(err)
	}
	cp, _, err := store.Load(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	return cp
}

// follow stands in for a tailer started at "now" on an idle database:
// until ctx ends it writes the checkpoint (revision-checked, as a tailer
// does) at the position its change stream has reached, the post-batch
// resume token, which moves on an idle stream. The checkpoint is all a
// snapshot reads of a tailer, so the snapshot's tests need no tailer
// (pkg/snapshot does not depend on pkg/tailer; e2e runs the two
// together). The channel gets nil when ctx ends, or the first error.
func (w *world) follow(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	store, err := checkpoint.NewKVStore(ctx, w.js, w.streams.CheckpointBucket, checkpoint.Key(w.db))
	if err != nil {
		done <- err
		return done
	}
	cs, err := w.client.Database(w.db).Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(50*time.Millisecond))
	if err != nil {
		done <- err
		return done
	}
	go func() {
		defer cs.Close(context.WithoutCancel(ctx))
		done <- func() error {
			_, rev, err := store.Load(ctx)
			if err != nil {
				return err
			}
			for ctx.Err() == nil {
				for cs.TryNext(ctx) {
					// Drained: the events are not the stand-in's concern,
					// the position after them is.
				}
				if err := cs.Err(); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				js, err := bson.MarshalExtJSON(cs.ResumeToken(), true, false)
				if err != nil {
					return err
				}
				cp := &checkpoint.Checkpoint{Token: js, UpdatedAt: time.Now().UTC(), Owner: "follow:1:0001"}
				next, err := store.Save(ctx, cp, rev)
				switch {
				case errors.Is(err, checkpoint.ErrMoved):
					// A hand-off moved it: resume from there, as a tailer does.
					if _, rev, err = store.Load(ctx); err != nil && ctx.Err() == nil {
						return err
					}
				case err != nil && ctx.Err() == nil:
					return err
				default:
					rev = next
				}
			}
			return nil
		}()
	}()
	return done
}

// TestSnapshotPublishesParentsFirstAndHandsOff: every document once, in
// _id order across type brackets, parents before kids, all at the start
// time T; the checkpoint created for a tailer without one resumes exactly
// at T.
func TestSnapshotPublishesParentsFirstAndHandsOff(t *testing.T) {
	w := newWorld(t)
	kids := w.seed(203, 77)
	readN, published, err := w.run(w.ctx, w.cfg(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if readN != int64(203+kids) || published != readN {
		t.Fatalf("read %d, published %d; want %d", readN, published, 203+kids)
	}
	evs := w.streamEvents()
	if len(evs) != 203+kids {
		t.Fatalf("stream holds %d events, want %d", len(evs), 203+kids)
	}
	T := evs[0].Source.ClusterTime
	seen := map[string]bool{}
	var lastParentKind int = -1
	for i, ev := range evs {
		if ev.Op != event.OpSnapshot || ev.Source.ClusterTime != T || seen[ev.ID] || !strings.HasPrefix(ev.ID, "snap:snapdb.") {
			t.Fatalf("event %d: %s %s at %s (T %s)", i, ev.ID, ev.Op, ev.Source.ClusterTime, T)
		}
		seen[ev.ID] = true
		want := "parents"
		if i >= 203 {
			want = "kids"
		}
		if ev.Source.Coll != want {
			t.Fatalf("event %d is of %s, want %s (parents first)", i, ev.Source.Coll, want)
		}
		if want == "parents" {
			key, _ := ev.KeyDocument()
			kind := map[bson.Type]int{bson.TypeInt64: 0, bson.TypeString: 1, bson.TypeObjectID: 2, bson.TypeDateTime: 3}[key.Lookup("_id").Type]
			if kind < lastParentKind {
				t.Fatalf("event %d: _id type order broken", i)
			}
			lastParentKind = kind
		}
	}
	// The tailer had no checkpoint: one was created that resumes at T.
	cp := w.checkpoint()
	if cp == nil || cp.EffectiveTime().Compare(T) > 0 {
		t.Fatalf("checkpoint %+v, want one at or before T %s", cp, T)
	}
	if _, err := w.client.Database(w.db).Collection("parents").InsertOne(w.ctx, bson.D{{Key: "name", Value: "after"}}); err != nil {
		t.Fatal(err)
	}
	tok, err := cp.ResumeToken()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := w.client.Database(w.db).Watch(w.ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(tok))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(w.ctx)
	// Resuming returns the changes at or after T (the overlap at T is
	// harmless: the snapshot read them too) and then the new one.
	for {
		if !cs.Next(w.ctx) {
			t.Fatal(cs.Err())
		}
		ct, ci := cs.Current.Lookup("clusterTime").Timestamp()
		if (event.ClusterTime{T: ct, I: ci}).Compare(T) < 0 {
			t.Fatalf("resuming from the created checkpoint returned a change before T %s: %s", T, cs.Current)
		}
		if name, _ := cs.Current.Lookup("fullDocument", "name").StringValueOK(); name == "after" {
			break
		}
	}
}

// cancelAt cancels the run once n documents were published.
type cancelAt struct {
	snapshot.NopDisplay
	n, done int64
	cancel  context.CancelFunc
}

func (c *cancelAt) Advance(_ string, n int64) {
	c.done += n
	if c.done >= c.n {
		c.cancel()
	}
}

// TestSnapshotResumesWhereItStopped: cancelled three times at random
// points, each restart reads exactly what was not yet done, with the same
// start time; the stream ends with every document exactly once.
func TestSnapshotResumesWhereItStopped(t *testing.T) {
	w := newWorld(t)
	total := int64(403 + w.seed(403, 211))
	rng := rand.New(rand.NewPCG(7, 11))
	kv, err := snapshot.OpenProgressBucket(w.ctx, w.js, "cdc_snapshots", 1)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	var T event.ClusterTime
	for kill := 0; kill < 3; kill++ {
		var doneBefore int64
		if p, err := snapshot.LoadProgress(w.ctx, kv, w.db); err != nil {
			t.Fatal(err)
		} else if p != nil {
			for _, c := range p.Collections {
				doneBefore += c.Done
			}
			if T != (event.ClusterTime{}) && p.ClusterTime != T {
				t.Fatalf("start time changed on resume: %s -> %s", T, p.ClusterTime)
			}
			T = p.ClusterTime
		}
		ctx, cancel := context.WithCancel(w.ctx)
		at := doneBefore + 1 + rng.Int64N(total-doneBefore-60)
		readN, _, err := w.run(ctx, w.cfg(), &cancelAt{n: at - doneBefore, cancel: cancel})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run %d: err = %v, want context.Canceled", kill, err)
		}
		if kill > 0 && readN == 0 {
			t.Fatalf("run %d read nothing", kill)
		}
		sum += readN
		t.Logf("run %d: resumed at %d done, cancelled after reading %d", kill, doneBefore, readN)
	}
	p, err := snapshot.LoadProgress(w.ctx, kv, w.db)
	if err != nil {
		t.Fatal(err)
	}
	var done int64
	for _, c := range p.Collections {
		done += c.Done
	}
	readN, _, err := w.run(w.ctx, w.cfg(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if readN != total-done {
		t.Fatalf("final run read %d documents, want exactly the %d not done", readN, total-done)
	}
	if p, _ = snapshot.LoadProgress(w.ctx, kv, w.db); !p.Complete || p.Runs != 4 || p.ClusterTime != T {
		t.Fatalf("progress after the last run: %+v", p)
	}
	evs := w.streamEvents()
	ids := map[string]bool{}
	for _, ev := range evs {
		ids[ev.ID] = true
	}
	if int64(len(evs)) != total || int64(len(ids)) != total {
		t.Fatalf("stream holds %d events (%d distinct), want %d", len(evs), len(ids), total)
	}
}

// TestSnapshotHandoffCases: an existing checkpoint is left alone; one that
// fell off the oplog is reset only by a snapshot of every replicated
// collection; an unfinished snapshot of other collections is not mixed
// up with a new one; a dry run writes nothing.
func TestSnapshotHandoffCases(t *testing.T) {
	w := newWorld(t)
	w.seed(20, 10)
	store, err := checkpoint.NewKVStore(w.ctx, w.js, w.streams.CheckpointBucket, checkpoint.Key(w.db))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("dry run writes nothing", func(t *testing.T) {
		cfg := w.cfg()
		cfg.DryRun = true
		rep, err := snapshot.New(w.client, w.js, w.set, cfg, zap.NewNop(), nil).Run(w.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if w.checkpoint() != nil || len(w.streamEvents()) != 0 || rep.Published != 0 {
			t.Fatal("dry run wrote")
		}
		if _, err := w.js.KeyValue(w.ctx, "cdc_snapshots"); !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Fatalf("dry run created the progress bucket: %v", err)
		}
		if !strings.Contains(strings.Join(rep.Notes, "\n"), "would create a tailer checkpoint") {
			t.Fatalf("plan: %v", rep.Notes)
		}
	})

	t.Run("existing checkpoint kept", func(t *testing.T) {
		// A tailer checkpoint from before: a stream opened now.
		cs, err := w.client.Database(w.db).Watch(w.ctx, mongo.Pipeline{})
		if err != nil {
			t.Fatal(err)
		}
		tok := cs.ResumeToken()
		_ = cs.Close(w.ctx)
		js, _ := bson.MarshalExtJSON(tok, true, false)
		held := time.Unix(1.7e9, 0).UTC()
		// With a lease history, which a later hand-off must pass on.
		before := &checkpoint.Checkpoint{V: checkpoint.Version, Token: js, HeldSince: &held, Takeovers: 3}
		_, rev, err := store.Load(w.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Save(w.ctx, before, rev); err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.run(w.ctx, w.cfg(), nil); err != nil {
			t.Fatal(err)
		}
		if got := w.checkpoint(); string(got.Token) != string(js) {
			t.Fatalf("checkpoint changed: %s -> %s", js, got.Token)
		}
	})

	t.Run("checkpoint fell off the oplog", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if _, err := w.client.Database(w.db).Collection("other").InsertOne(w.ctx, bson.D{{Key: "i", Value: i}}); err != nil {
				t.Fatal(err)
			}
		}
		latest := w.srv.LatestOplogTime()
		w.srv.TruncateOplog(latest)
		cfg := w.cfg()
		cfg.Collections = []string{"parents"}
		_, _, err := w.run(w.ctx, cfg, nil)
		if !errors.Is(err, snapshot.ErrHandoff) || !strings.Contains(err.Error(), "kids") {
			t.Fatalf("subset snapshot with a lost checkpoint: %v", err)
		}
		if _, _, err := w.run(w.ctx, w.cfg(), nil); err != nil {
			t.Fatal(err)
		}
		cp := w.checkpoint()
		oldest, err := oplog.Oldest(w.ctx, w.client)
		if err != nil {
			t.Fatal(err)
		}
		if cp.EffectiveTime().Compare(oldest) < 0 {
			t.Fatalf("checkpoint %s still before the oldest entry %s", cp.EffectiveTime(), oldest)
		}
		if cp.Takeovers != 3 || cp.HeldSince == nil || !cp.Handoff {
			t.Fatalf("reset checkpoint %+v: want a hand-off that kept the lease history (3 takeovers, held since)", cp)
		}
	})

	t.Run("unfinished snapshot of other collections", func(t *testing.T) {
		ctx, cancel := context.WithCancel(w.ctx)
		cfg := w.cfg()
		cfg.BatchSize = 5
		_, _, err := w.run(ctx, cfg, &cancelAt{n: 5, cancel: cancel})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		cfg.Collections = []string{"parents"}
		if _, _, err := w.run(w.ctx, cfg, nil); !errors.Is(err, snapshot.ErrOtherSnapshot) || !strings.Contains(err.Error(), "--restart") {
			t.Fatalf("want ErrOtherSnapshot naming --restart, got %v", err)
		}
		cfg.Restart = true
		if readN, _, err := w.run(w.ctx, cfg, nil); err != nil || readN != 20 {
			t.Fatalf("restart: read %d, %v", readN, err)
		}
	})
}

// TestSnapshotWaitsForTailer: a batch of kids (which reference parents) is
// published only once the tailer has streamed up to its read time; with
// no tailer running the snapshot stops with instructions and resumes once
// one runs.
func TestSnapshotWaitsForTailer(t *testing.T) {
	w := newWorld(t)
	w.seed(30, 40)
	cfg := w.cfg()
	cfg.TailerWait = 500 * time.Millisecond
	readN, _, err := w.run(w.ctx, cfg, nil)
	var tb *snapshot.TailerBehindError
	if !errors.As(err, &tb) || tb.Collection != "kids" || !strings.Contains(err.Error(), "--no-wait-tailer") {
		t.Fatalf("want TailerBehindError for kids, got %v", err)
	}
	if readN < 30 {
		t.Fatalf("parents were not published before the wait (read %d)", readN)
	}
	tctx, stop := context.WithCancel(w.ctx)
	defer stop()
	done := w.follow(tctx)
	cfg.TailerWait = 30 * time.Second
	if readN, _, err = w.run(w.ctx, cfg, nil); err != nil || readN != 40 {
		t.Fatalf("resume with the tailer running: read %d, %v", readN, err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
