package checkpoint_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/checkpoint"
)

// bucket starts an embedded NATS server with the checkpoint bucket
// declared as production declares it (bus.Ensure) and returns it.
func bucket(t *testing.T) (jetstream.JetStream, jetstream.KeyValue, string) {
	t.Helper()
	ctx := context.Background()
	_, js := bustest.Start(t)
	sc := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: 2 * time.Minute, MaxAge: time.Hour, MaxBytes: -1, CheckpointBucket: "ckpt"}
	if err := bus.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, sc.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	return js, kv, sc.CheckpointBucket
}

// TestKVStoreRevision: writes are revision-checked. Of two writers that
// loaded the same revision, the second Save fails with a *MovedError that
// names what is stored and who wrote it; so does a create over an
// existing checkpoint and a write over a deleted one. Reloading gives the
// revision to write over.
func TestKVStoreRevision(t *testing.T) {
	ctx := context.Background()
	js, kv, name := bucket(t)
	key := checkpoint.Key("escrow")
	if key != "tailer.escrow" {
		t.Fatalf("Key = %q: the key is part of the persisted format", key)
	}
	a, err := checkpoint.NewKVStore(ctx, js, name, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := checkpoint.NewKVStore(ctx, js, name, key)
	if err != nil {
		t.Fatal(err)
	}
	if a.Key() != key {
		t.Fatalf("Key() = %q, want %q", a.Key(), key)
	}
	if cp, rev, err := a.Load(ctx); cp != nil || rev != 0 || err != nil {
		t.Fatalf("empty bucket: %v, %d, %v", cp, rev, err)
	}
	cp := func(owner string) *checkpoint.Checkpoint {
		return &checkpoint.Checkpoint{Token: []byte(goldenToken), Owner: owner, UpdatedAt: time.Now().UTC()}
	}
	rev1, err := a.Save(ctx, cp("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// What is stored is the encoded record, current version.
	if e, err := kv.Get(ctx, key); err != nil || e.Revision() != rev1 {
		t.Fatalf("stored: %v, %v", e, err)
	} else if got, err := checkpoint.Decode(e.Value()); err != nil || got.V != checkpoint.Version || got.Owner != "a" {
		t.Fatalf("stored %s: %v", e.Value(), err)
	}

	// A create over it fails.
	_, err = b.Save(ctx, cp("b"), 0)
	var moved *checkpoint.MovedError
	if !errors.As(err, &moved) || !errors.Is(err, checkpoint.ErrMoved) || moved.Expected != 0 || moved.Revision != rev1 || moved.Holder() != "a" {
		t.Fatalf("create over an existing checkpoint: %v", err)
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("the library's sentinel is not reachable through %v", err)
	}

	// Both load the same revision; the first writer wins.
	_, ra, err := a.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, rb, err := b.Load(ctx)
	if err != nil || ra != rb || ra != rev1 {
		t.Fatalf("loads: %d, %d (%v)", ra, rb, err)
	}
	rev2, err := a.Save(ctx, cp("a"), ra)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Save(ctx, cp("b"), rb)
	if !errors.As(err, &moved) || moved.Expected != rb || moved.Revision != rev2 || moved.Current == nil || moved.Current.Owner != "a" {
		t.Fatalf("second Save on a stale revision: %v", err)
	}
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("the library's sentinel is not reachable through %v", err)
	}
	if got, rev, _ := a.Load(ctx); got.Owner != "a" || rev != rev2 {
		t.Fatalf("stored: %+v at %d, want a's write at %d", got, rev, rev2)
	}
	// After a reload the second writer may write over it.
	rev3, err := b.Save(ctx, cp("b"), moved.Revision)
	if err != nil {
		t.Fatal(err)
	}

	// A deleted checkpoint (an operator's kv del): a stale writer is told
	// so (Current nil) and may create it again.
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got, rev, err := a.Load(ctx); got != nil || rev != 0 || err != nil {
		t.Fatalf("deleted: %v, %d, %v", got, rev, err)
	}
	_, err = b.Save(ctx, cp("b"), rev3)
	if !errors.As(err, &moved) || moved.Current != nil || moved.Revision != 0 || moved.Holder() != "nobody (deleted)" {
		t.Fatalf("write over a deleted checkpoint: %v", err)
	}
	if _, err := a.Save(ctx, cp("a"), 0); err != nil {
		t.Fatalf("re-create after delete: %v", err)
	}
}

// TestKVStoreUnreadable: a stored value that does not decode is an error
// on Load, never "no checkpoint" (a writer would create one over it), and
// a stale write over it is an error that is not a *MovedError (the writer
// cannot know who moved it).
func TestKVStoreUnreadable(t *testing.T) {
	ctx := context.Background()
	js, kv, name := bucket(t)
	key := checkpoint.Key("shop")
	s, err := checkpoint.NewKVStore(ctx, js, name, key)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, key, []byte(`{"v":9,"token":{"_data":"82"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cp, r, err := s.Load(ctx); err == nil || cp != nil || r != 0 {
		t.Fatalf("Load of an unknown version: %v, %d, %v", cp, r, err)
	}
	_, err = s.Save(ctx, &checkpoint.Checkpoint{Token: []byte(goldenToken)}, rev+7)
	var moved *checkpoint.MovedError
	if err == nil || errors.As(err, &moved) || errors.Is(err, checkpoint.ErrMoved) {
		t.Fatalf("stale write over an unreadable checkpoint: %v", err)
	}
	// At its revision it may be replaced.
	if _, err := s.Save(ctx, &checkpoint.Checkpoint{Token: []byte(goldenToken)}, rev); err != nil {
		t.Fatal(err)
	}
}

func TestNewKVStoreMissingBucket(t *testing.T) {
	_, js := bustest.Start(t)
	if _, err := checkpoint.NewKVStore(context.Background(), js, "absent", checkpoint.Key("shop")); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("NewKVStore on a missing bucket: %v", err)
	}
}
