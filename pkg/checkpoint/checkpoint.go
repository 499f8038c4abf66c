package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/oplog"
)

// Version is the persisted checkpoint format version written. Version 2
// added Owner, Handoff and Released; version 3 added the lease history
// (HeldSince, LastTakeover, Takeovers). Decode still reads versions 1 (no
// owner: written before the fence existed) and 2 (no lease history), so a
// replicator upgraded in place resumes where the old one stopped.
const Version = 3

// Checkpoint is the tailer's durable resume point: the resume token of the
// last change JetStream acknowledged (or a post-batch token of an idle
// stream whose every earlier event was acknowledged). It never points
// inside a Mongo transaction.
//
// It is also the tailer's fence: exactly one tailer writes it at a time,
// each write checked against the revision that tailer last read or wrote
// (KVStore.Save), and the active one rewrites it at least every checkpoint
// interval, so a standby can tell a live holder (the revision moves) from
// a dead one (it does not).
//
// The JSON field names and order are the persisted format: changing them
// breaks every stored checkpoint (the golden tests say so).
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

// Takeover reasons, the values of Takeover.Reason (and of the takeover
// metric's reason label).
const (
	// TakeoverExpired: the holder's checkpoint stayed unchanged for
	// tailer.standby_takeover (a holder that died, hung or lost NATS).
	TakeoverExpired = "expired"
	// TakeoverReleased: the holder stopped gracefully and released it.
	TakeoverReleased = "released"
)

// Takeover is one change of the checkpoint's holder, recorded by the
// tailer that took it. It is part of the record (Checkpoint.LastTakeover),
// so it is persisted and pinned like the rest.
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

// EffectiveTime is the cluster time the checkpoint resumes after: the time
// in its resume token, which advances on an idle stream too (post-batch
// tokens), or else ClusterTime, the last published event's, when the
// token's shape is unknown or unreadable (a lower bound: the token is never
// before the last event it covers). Zero when neither is known: a
// checkpoint pinned before the first event with an opaque token.
//
// It is the one answer to "how far has streaming got" for the tailer's
// checkpoint metric, the oplog headroom monitor, the snapshot's hand-off
// and `cdc status`, so they cannot disagree about one checkpoint.
func (c *Checkpoint) EffectiveTime() event.ClusterTime {
	if tok, err := c.ResumeToken(); err == nil {
		if ct, ok := oplog.TokenTime(tok); ok {
			return ct
		}
	}
	return c.ClusterTime
}

// Holder names the checkpoint's writer for logs, errors and /readyz; nil
// (no checkpoint: it was deleted) and a version 1 checkpoint (no Owner)
// get a phrase instead of an empty name.
func (c *Checkpoint) Holder() string {
	switch {
	case c == nil:
		return "nobody (deleted)"
	case c.Owner == "":
		return "a tailer without a fence (checkpoint version 1)"
	}
	return c.Owner
}

// Encode renders cp in the current format (version Version, whatever cp.V
// says): a checkpoint read in an older version is written back in the
// current one.
func Encode(cp *Checkpoint) ([]byte, error) {
	c := *cp
	c.V = Version
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	return b, nil
}

// Decode parses and validates a stored checkpoint of version 1 to
// Version. A newer version is refused rather than half read: its fields
// may change what resuming from it means.
func Decode(b []byte) (*Checkpoint, error) {
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("decode checkpoint: %w", err)
	}
	if cp.V < 1 || cp.V > Version {
		return nil, fmt.Errorf("checkpoint version %d is not 1 to %d", cp.V, Version)
	}
	if len(cp.Token) == 0 {
		return nil, errors.New("checkpoint without token")
	}
	return &cp, nil
}
