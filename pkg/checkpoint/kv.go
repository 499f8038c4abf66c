package checkpoint

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Key is the KV key of the checkpoint of the tailer of database db (one
// tailer per source database).
func Key(db string) string { return "tailer." + db }

// KVStore stores one checkpoint in a JetStream key-value bucket, next to
// the events it describes: a checkpoint can never survive its stream.
// Writes are compare-and-set on the key's revision (KeyValue.Create and
// Update), which is what fences two writers of one key. Safe for
// concurrent use.
type KVStore struct {
	kv  jetstream.KeyValue
	key string
}

// NewKVStore opens the bucket (it must exist: bus.Ensure declares it); key
// is the checkpoint's key, Key(db) for a tailer's.
func NewKVStore(ctx context.Context, js jetstream.JetStream, bucket, key string) (*KVStore, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("checkpoint bucket %s: %w", bucket, err)
	}
	return &KVStore{kv: kv, key: key}, nil
}

// Key is the checkpoint's KV key, which the tailer names in its fence's
// logs.
func (s *KVStore) Key() string { return s.key }

// Load returns the stored checkpoint and its revision, or nil, 0 if there
// is none. A stored value that does not decode is an error, never "none":
// treating it as absent would let a writer create a checkpoint from
// scratch over it.
func (s *KVStore) Load(ctx context.Context) (*Checkpoint, uint64, error) {
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load checkpoint %s: %w", s.key, err)
	}
	cp, err := Decode(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("checkpoint %s revision %d: %w", s.key, e.Revision(), err)
	}
	return cp, e.Revision(), nil
}

// Save stores cp if the stored revision is still rev (0: only if there is
// no checkpoint) and returns the new revision. Otherwise it returns a
// *MovedError (errors.Is ErrMoved) naming what is stored. A stale revision
// is recognised by the library's sentinels (jetstream.ErrKeyExists for a
// create, jetstream.ErrKeyRevisionMismatch for an update: JetStream API
// error codes 10071, or 10164 on a replicated stream), never by message
// text.
func (s *KVStore) Save(ctx context.Context, cp *Checkpoint, rev uint64) (uint64, error) {
	b, err := Encode(cp)
	if err != nil {
		return 0, err
	}
	var next uint64
	if rev == 0 {
		next, err = s.kv.Create(ctx, s.key, b)
	} else {
		next, err = s.kv.Update(ctx, s.key, b, rev)
	}
	if err == nil {
		return next, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("save checkpoint %s: %w", s.key, err)
	}
	cur, curRev, lerr := s.Load(ctx)
	if lerr != nil {
		// Not a MovedError: without the current checkpoint the caller
		// cannot tell who moved it; it retries and loads it again.
		return 0, fmt.Errorf("save checkpoint %s: revision %d is stale (%v) and the current one is unreadable: %w", s.key, rev, err, lerr)
	}
	return 0, &MovedError{Key: s.key, Expected: rev, Revision: curRev, Current: cur, Cause: err}
}
