package tailer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/bson"

	"github.com/amanat/cdc/pkg/event"
)

// CheckpointVersion is the persisted checkpoint format version.
const CheckpointVersion = 1

// Checkpoint is the tailer's durable resume point: the resume token of the
// last change JetStream acknowledged (or a post-batch token of an idle
// stream whose every earlier event was acknowledged). It never points
// inside a Mongo transaction.
type Checkpoint struct {
	V int `json:"v"`
	// Token is the change-stream resume token, canonical Extended JSON.
	Token json.RawMessage `json:"token"`
	// ClusterTime is the cluster time of the last published event; zero
	// before the first one.
	ClusterTime event.ClusterTime `json:"cluster_time"`
	// Events counts events published since the checkpoint was created.
	Events uint64 `json:"events"`
	// UpdatedAt is when the checkpoint was written.
	UpdatedAt time.Time `json:"updated_at"`
}

// ResumeToken decodes Token.
func (c *Checkpoint) ResumeToken() (bson.Raw, error) {
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON(c.Token, true, &raw); err != nil {
		return nil, fmt.Errorf("checkpoint token: %w", err)
	}
	return raw, nil
}

// CheckpointStore persists checkpoints.
type CheckpointStore interface {
	// Load returns the stored checkpoint, or nil if there is none.
	Load(ctx context.Context) (*Checkpoint, error)
	// Save stores cp durably.
	Save(ctx context.Context, cp *Checkpoint) error
	// Create stores cp only if there is no checkpoint; otherwise it
	// returns ErrCheckpointExists.
	Create(ctx context.Context, cp *Checkpoint) error
}

// ErrCheckpointExists is Create's answer when a checkpoint appeared since
// Load (a snapshot's hand-off, another tailer): resume from it instead.
var ErrCheckpointExists = errors.New("a checkpoint already exists")

// KVCheckpoints stores checkpoints in a JetStream key-value bucket, next to
// the events they describe: a checkpoint can never survive its stream.
type KVCheckpoints struct {
	kv  jetstream.KeyValue
	key string
}

// NewKVCheckpoints opens the bucket; key identifies the tailer (one per
// source database).
func NewKVCheckpoints(ctx context.Context, js jetstream.JetStream, bucket, key string) (*KVCheckpoints, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("checkpoint bucket %s: %w", bucket, err)
	}
	return &KVCheckpoints{kv: kv, key: key}, nil
}

// CheckpointKey is the KV key of the tailer of database db.
func CheckpointKey(db string) string { return "tailer." + db }

// Load implements CheckpointStore.
func (s *KVCheckpoints) Load(ctx context.Context) (*Checkpoint, error) {
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load checkpoint %s: %w", s.key, err)
	}
	return DecodeCheckpoint(e.Value())
}

// Save implements CheckpointStore.
func (s *KVCheckpoints) Save(ctx context.Context, cp *Checkpoint) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	if _, err := s.kv.Put(ctx, s.key, b); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", s.key, err)
	}
	return nil
}

// Create implements CheckpointStore.
func (s *KVCheckpoints) Create(ctx context.Context, cp *Checkpoint) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	if _, err := s.kv.Create(ctx, s.key, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrCheckpointExists
		}
		return fmt.Errorf("create checkpoint %s: %w", s.key, err)
	}
	return nil
}

// Delete removes the checkpoint (snapshot resets the start point).
func (s *KVCheckpoints) Delete(ctx context.Context) error {
	if err := s.kv.Delete(ctx, s.key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete checkpoint %s: %w", s.key, err)
	}
	return nil
}

// DecodeCheckpoint parses and validates a stored checkpoint.
func DecodeCheckpoint(b []byte) (*Checkpoint, error) {
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("decode checkpoint: %w", err)
	}
	if cp.V != CheckpointVersion {
		return nil, fmt.Errorf("checkpoint version %d is not %d", cp.V, CheckpointVersion)
	}
	if len(cp.Token) == 0 {
		return nil, errors.New("checkpoint without token")
	}
	return &cp, nil
}
