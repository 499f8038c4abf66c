package event

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Version is the envelope version this package writes. Readers accept
// exactly the versions they know.
const Version = 1

// Op is what happened to the document.
type Op string

// The operations an envelope can carry.
const (
	OpInsert  Op = "insert"
	OpUpdate  Op = "update"
	OpReplace Op = "replace"
	OpDelete  Op = "delete"
	// OpSnapshot is a document read by a snapshot scan.
	OpSnapshot Op = "snapshot"
	// OpRefresh is a document re-read by an operator replay.
	OpRefresh Op = "refresh"
)

// Valid reports whether o is a known operation.
func (o Op) Valid() bool {
	switch o {
	case OpInsert, OpUpdate, OpReplace, OpDelete, OpSnapshot, OpRefresh:
		return true
	}
	return false
}

// ClusterTime is a MongoDB cluster time (oplog timestamp).
type ClusterTime struct {
	T uint32 `json:"t"`
	I uint32 `json:"i"`
}

// Pack returns the cluster time as one sortable int64 ((T << 32) | I), the
// form the replicator's bookkeeping tables store.
func (c ClusterTime) Pack() int64 { return int64(c.T)<<32 | int64(c.I) }

// Unpack is the inverse of Pack.
func Unpack(v int64) ClusterTime { return ClusterTime{T: uint32(v >> 32), I: uint32(v)} }

// Compare orders cluster times.
func (c ClusterTime) Compare(o ClusterTime) int {
	switch {
	case c.T != o.T:
		if c.T < o.T {
			return -1
		}
		return 1
	case c.I != o.I:
		if c.I < o.I {
			return -1
		}
		return 1
	}
	return 0
}

// Time is the wall-clock second of the cluster time.
func (c ClusterTime) Time() time.Time { return time.Unix(int64(c.T), 0).UTC() }

// String formats as "<seconds>.<increment>", the form tailer.start_at and
// the replay commands accept.
func (c ClusterTime) String() string {
	return strconv.FormatUint(uint64(c.T), 10) + "." + strconv.FormatUint(uint64(c.I), 10)
}

// Timestamp converts to the driver's type.
func (c ClusterTime) Timestamp() bson.Timestamp { return bson.Timestamp{T: c.T, I: c.I} }

// Txn identifies a MongoDB multi-document transaction and the event's place
// in it.
type Txn struct {
	// LSID is the logical session id (lsid.id UUID) as 32 hex digits.
	LSID string `json:"lsid"`
	// Number is the transaction number within the session.
	Number int64 `json:"number"`
	// Index is the event's position within the transaction, from 0.
	Index int `json:"index"`
	// Last is true on the transaction's final event; the tailer sets it
	// once it has seen the next event or an idle stream.
	Last bool `json:"last,omitempty"`
}

// ID names the transaction (same lsid and txnNumber).
func (t *Txn) ID() string { return t.LSID + ":" + strconv.FormatInt(t.Number, 10) }

// Source says where and when the change happened.
type Source struct {
	DB          string      `json:"db"`
	Coll        string      `json:"coll"`
	ClusterTime ClusterTime `json:"cluster_time"`
	// WallTime is the server's wall clock at the change (MongoDB 6+);
	// zero when the server did not send it.
	WallTime time.Time `json:"wall_time,omitzero"`
	// Txn is set for events of a multi-document transaction.
	Txn *Txn `json:"txn,omitempty"`
}

// UpdateDescription is the delta of an update event.
type UpdateDescription struct {
	// Updated holds the changed fields (dotted paths).
	Updated bson.Raw
	// Removed lists removed field paths.
	Removed []string
	// Truncated is the array of {field, newSize} for shortened arrays.
	Truncated bson.Raw
}

// Event is the versioned change-event envelope.
type Event struct {
	// V is the envelope version (Version).
	V int
	// ID is unique per change; it is the JetStream Nats-Msg-Id.
	ID string
	// Op is the operation.
	Op     Op
	Source Source
	// Key is the document key ({"_id": ...}).
	Key bson.Raw
	// Doc is the full document after the change; nil for deletes and for
	// updates whose document no longer exists.
	Doc bson.Raw
	// Pre is the pre-image when the collection records them.
	Pre bson.Raw
	// Update is the delta of an update.
	Update *UpdateDescription
	// Token is the change stream resume token; nil for snapshot and
	// refresh events.
	Token bson.Raw
	// Oversize, when positive, is the size in bytes of the envelope the
	// bus could not carry: the documents were left out, and consumers must
	// treat the event as unappliable (the sink dead-letters it).
	Oversize int64
}

// Position is the event's place in its document's history: cluster time,
// then index inside its transaction.
type Position struct {
	ClusterTime ClusterTime
	TxnIndex    int
}

// Compare orders positions.
func (p Position) Compare(o Position) int {
	if c := p.ClusterTime.Compare(o.ClusterTime); c != 0 {
		return c
	}
	switch {
	case p.TxnIndex < o.TxnIndex:
		return -1
	case p.TxnIndex > o.TxnIndex:
		return 1
	}
	return 0
}

// Position returns the event's position.
func (e *Event) Position() Position {
	p := Position{ClusterTime: e.Source.ClusterTime}
	if e.Source.Txn != nil {
		p.TxnIndex = e.Source.Txn.Index
	}
	return p
}

// ErrMalformed marks an envelope that cannot be decoded or is invalid. It
// is poison: retrying it never helps.
var ErrMalformed = errors.New("malformed event")

// Validate checks the fields every consumer relies on.
func (e *Event) Validate() error {
	switch {
	case e.V != Version:
		return fmt.Errorf("%w: unsupported envelope version %d (this build reads %d)", ErrMalformed, e.V, Version)
	case e.ID == "":
		return fmt.Errorf("%w: empty id", ErrMalformed)
	case !e.Op.Valid():
		return fmt.Errorf("%w: event %s: unknown op %q", ErrMalformed, e.ID, e.Op)
	case e.Source.DB == "" || e.Source.Coll == "":
		return fmt.Errorf("%w: event %s: source db and coll are required", ErrMalformed, e.ID)
	case len(e.Key) == 0:
		return fmt.Errorf("%w: event %s: key is required", ErrMalformed, e.ID)
	case e.Op != OpDelete && e.Op != OpUpdate && len(e.Doc) == 0 && e.Oversize == 0:
		return fmt.Errorf("%w: event %s: op %s needs doc", ErrMalformed, e.ID, e.Op)
	}
	return nil
}

// Document returns Doc (nil when absent).
func (e *Event) Document() (bson.Raw, error) { return e.Doc, nil }

// KeyDocument returns Key.
func (e *Event) KeyDocument() (bson.Raw, error) { return e.Key, nil }

// DocKey returns the document key of the event's _id (see KeyString): the
// identity id_map (legacy_object_id), the version guard
// (cdc.doc_versions), dead letters, deferred events and dangling
// references know the document by.
func (e *Event) DocKey() (string, error) {
	key, err := e.KeyDocument()
	if err != nil {
		return "", err
	}
	id, err := key.LookupErr("_id")
	if err != nil {
		return "", fmt.Errorf("%w: event %s: key has no _id", ErrMalformed, e.ID)
	}
	return KeyString(id), nil
}
