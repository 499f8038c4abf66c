package tailer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
)

// CheckpointVersion is the persisted checkpoint format version written.
// Version 2 added Owner, Handoff and Released; version 3 added the lease
// history (HeldSince, LastTakeover, Takeovers). DecodeCheckpoint still
// reads versions 1 (no owner: written before the fence existed) and 2 (no
// lease history).
const CheckpointVersion = 3

// Checkpoint is the tailer's durable resume point: the resume token of the
// last change JetStream acknowledged (or a post-batch token of an idle
// stream whose every earlier event was acknowledged). It never points
// inside a Mongo transaction.
//
// It is also the tailer's fence: exactly one tailer writes it at a time,
// each write checked against the revision that tailer last read or wrote
// (CheckpointStore.Save), and the active one rewrites it at least every
// checkpoint interval, so a standby can tell a live holder (the revision
// moves) from a dead one (it does not).
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
	// Owner names the writer: a tailer's instance identity (NewOwner,
	// "<instance>:<pid>:<nonce>") or a snapshot's (HandoffOwner). Empty in
	// a version 1 checkpoint.
	Owner string `json:"owner,omitempty"`
	// Handoff marks a checkpoint written by a snapshot's hand-off: a
	// running tailer restarts from it (it does not stand by), and the first
	// tailer to write after it owns it.
	Handoff bool `json:"handoff,omitempty"`
	// Released marks the last write of a tailer that stopped gracefully:
	// another tailer may take it over at once instead of waiting for the
	// standby takeover time.
	Released bool `json:"released,omitempty"`
	// StartAfter marks a Token that is an invalidate event's: a change
	// stream starts after it only with startAfter (resumeAfter fails with
	// InvalidResumeToken, 260). Absent (false) in every other checkpoint.
	StartAfter bool `json:"start_after,omitempty"`
	// HeldSince is when Owner's tenure began: the wall-clock time of the
	// claim that made it the holder (its own clock). A holder's later
	// writes carry it unchanged. Nil in versions 1 and 2 and in a
	// snapshot's hand-off.
	HeldSince *time.Time `json:"held_since,omitempty"`
	// LastTakeover is the most recent change of holder from one tailer to
	// another (nil: none recorded). Carried unchanged by every later write.
	LastTakeover *Takeover `json:"last_takeover,omitempty"`
	// Takeovers counts the changes of holder this checkpoint has recorded.
	Takeovers uint64 `json:"takeovers,omitempty"`
}

// Takeover reasons.
const (
	// TakeoverExpired: the holder's checkpoint stayed unchanged for
	// tailer.standby_takeover (a holder that died, hung or lost NATS).
	TakeoverExpired = "expired"
	// TakeoverReleased: the holder stopped gracefully and released it.
	TakeoverReleased = "released"
)

// Takeover is one change of the checkpoint's holder, recorded by the
// tailer that took it.
type Takeover struct {
	// At is when the new holder's claim was written (its clock).
	At time.Time `json:"at"`
	// From is the previous holder, To the new one (Owner identities).
	From string `json:"from"`
	To   string `json:"to"`
	// Reason is TakeoverExpired or TakeoverReleased.
	Reason string `json:"reason"`
	// FromLastWrite is the previous holder's last write (UpdatedAt of the
	// checkpoint taken over, the previous holder's clock).
	FromLastWrite time.Time `json:"from_last_write"`
	// QuietMillis is, for TakeoverExpired, how long the new holder saw the
	// checkpoint unchanged before it claimed it (at least
	// tailer.standby_takeover); 0 for a release.
	QuietMillis int64 `json:"quiet_ms,omitempty"`
}

// ResumeToken decodes Token.
func (c *Checkpoint) ResumeToken() (bson.Raw, error) {
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON(c.Token, true, &raw); err != nil {
		return nil, fmt.Errorf("checkpoint token: %w", err)
	}
	return raw, nil
}

// claimable reports whether a tailer with identity self may take cp over
// without waiting: it is its own, released, a snapshot's hand-off, or a
// version 1 checkpoint from before the fence.
func (c *Checkpoint) claimable(self string) bool {
	return c.Owner == self || c.Owner == "" || c.Handoff || c.Released
}

// NewOwner returns a tailer identity "<instance>:<pid>:<nonce>": instance
// (the host name when empty) says where it runs, the pid and a random nonce
// make every process distinct, so two processes with one configured name
// still fence each other.
func NewOwner(instance string) string {
	if instance == "" {
		instance = hostname()
	}
	return fmt.Sprintf("%s:%d:%04x", instance, os.Getpid(), rand.Uint32N(1<<16))
}

// HandoffOwner is the Owner a snapshot's hand-off writes:
// "snapshot:<host>:<pid>".
func HandoffOwner() string { return fmt.Sprintf("snapshot:%s:%d", hostname(), os.Getpid()) }

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown-host"
	}
	return h
}

// CheckpointStore persists checkpoints with revision-checked writes.
type CheckpointStore interface {
	// Load returns the stored checkpoint and its revision, or nil, 0 if
	// there is none.
	Load(ctx context.Context) (*Checkpoint, uint64, error)
	// Save stores cp if the stored revision is still rev (0: only if there
	// is no checkpoint) and returns the new revision. Otherwise it returns
	// a *MovedError (errors.Is ErrCheckpointMoved) naming what is stored.
	Save(ctx context.Context, cp *Checkpoint, rev uint64) (uint64, error)
}

// KVCheckpoints stores checkpoints in a JetStream key-value bucket, next to
// the events they describe: a checkpoint can never survive its stream.
// Writes are compare-and-set on the key's revision (KeyValue.Create and
// Update). Safe for concurrent use.
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

// Key is the checkpoint's KV key.
func (s *KVCheckpoints) Key() string { return s.key }

// Load implements CheckpointStore.
func (s *KVCheckpoints) Load(ctx context.Context) (*Checkpoint, uint64, error) {
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load checkpoint %s: %w", s.key, err)
	}
	cp, err := DecodeCheckpoint(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("checkpoint %s revision %d: %w", s.key, e.Revision(), err)
	}
	return cp, e.Revision(), nil
}

// Save implements CheckpointStore. A stale revision is recognised by the
// library's sentinels (jetstream.ErrKeyExists for a create,
// jetstream.ErrKeyRevisionMismatch for an update: JetStream API error codes
// 10071, or 10164 on a replicated stream), never by message text.
func (s *KVCheckpoints) Save(ctx context.Context, cp *Checkpoint, rev uint64) (uint64, error) {
	b, err := EncodeCheckpoint(cp)
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

// Delete removes the checkpoint (whatever its revision).
func (s *KVCheckpoints) Delete(ctx context.Context) error {
	if err := s.kv.Delete(ctx, s.key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete checkpoint %s: %w", s.key, err)
	}
	return nil
}

// EncodeCheckpoint renders cp in the current format (version
// CheckpointVersion, whatever cp.V says).
func EncodeCheckpoint(cp *Checkpoint) ([]byte, error) {
	c := *cp
	c.V = CheckpointVersion
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	return b, nil
}

// DecodeCheckpoint parses and validates a stored checkpoint of version 1,
// 2 or 3.
func DecodeCheckpoint(b []byte) (*Checkpoint, error) {
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("decode checkpoint: %w", err)
	}
	if cp.V < 1 || cp.V > CheckpointVersion {
		return nil, fmt.Errorf("checkpoint version %d is not 1 to %d", cp.V, CheckpointVersion)
	}
	if len(cp.Token) == 0 {
		return nil, errors.New("checkpoint without token")
	}
	return &cp, nil
}
