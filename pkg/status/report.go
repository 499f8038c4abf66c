package status

import (
	"encoding/json"
	"time"

	"github.com/amanat/cdc/pkg/event"
)

// ReportVersion is the version of the JSON form of Report (field "v").
// Fields are only added within a version; a rename or a change of
// meaning bumps it.
const ReportVersion = 1

// Report is what `cdc status` prints. A section whose Error is set could
// not be read; its other fields are then zero, not measured.
type Report struct {
	V int `json:"v"`
	// Time is when the report was made.
	Time time.Time `json:"time"`
	// Healthy is false when Problems is not empty.
	Healthy bool `json:"healthy"`
	// Problems lists every unreachable system and every state that needs
	// an operator, one sentence each.
	Problems []string `json:"problems"`
	// Warnings lists states worth a look that do not make the report
	// unhealthy (deferred events older than DeferredWarnAge), one sentence
	// each.
	Warnings []string `json:"warnings"`

	NATS     NATSStatus `json:"nats"`
	Postgres System     `json:"postgres"`
	Mongo    System     `json:"mongo"`

	Tailer    TailerStatus   `json:"tailer"`
	Oplog     OplogStatus    `json:"oplog"`
	Stream    StreamStatus   `json:"stream"`
	DLQStream StreamStatus   `json:"dlq_stream"`
	Consumer  ConsumerStatus `json:"consumer"`
	Sink      SinkStatus     `json:"sink"`
	// Lanes is set when sink.lanes is configured (then Stream, Consumer
	// and Sink say "per lane" and Lag and Deferred sum the lanes').
	Lanes       *LanesStatus      `json:"lanes,omitempty"`
	Deferred    DeferredStatus    `json:"deferred"`
	Lag         LagStatus         `json:"lag"`
	DeadLetters DeadLetterStatus  `json:"dead_letters"`
	Collections CollectionsStatus `json:"collections"`
	// Verify is the continuous verifier's last mismatch (verify.go); nil
	// while none was recorded.
	Verify *VerifyStatus `json:"verify,omitempty"`
}

// NATS modes: how status reached the stored JetStream state.
const (
	// ModeExternal: connected to nats.url.
	ModeExternal = "external"
	// ModeDaemon: connected to the running daemon's embedded server.
	ModeDaemon = "daemon"
	// ModeStoredState: the daemon is down; a temporary embedded server
	// read its store directory.
	ModeStoredState = "stored_state"
)

// System is the reachability of one system.
type System struct {
	Reachable bool `json:"reachable"`
	// Address is where it was looked for (credentials redacted).
	Address string `json:"address,omitempty"`
	Error   string `json:"error,omitempty"`
}

// NATSStatus is how the JetStream state was reached.
type NATSStatus struct {
	System
	// Mode is ModeExternal, ModeDaemon or ModeStoredState ("" when
	// unreachable).
	Mode string `json:"mode,omitempty"`
	// StoreDir is the embedded server's store (embedded modes only).
	StoreDir string `json:"store_dir,omitempty"`
}

// ClusterTime is a MongoDB cluster time with its wall-clock second.
type ClusterTime struct {
	T uint32 `json:"t"`
	I uint32 `json:"i"`
	// Time is the wall-clock second T stands for (UTC).
	Time time.Time `json:"time"`
}

func clusterTime(c event.ClusterTime) *ClusterTime {
	return &ClusterTime{T: c.T, I: c.I, Time: c.Time()}
}

// String formats as "<seconds>.<increment>" (the form tailer.start_at
// and the replay commands accept).
func (c *ClusterTime) String() string {
	if c == nil {
		return "-"
	}
	return event.ClusterTime{T: c.T, I: c.I}.String()
}

// TailerStatus is the tailer's stored checkpoint.
type TailerStatus struct {
	// Bucket and Key locate the checkpoint.
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	// Found is false when there is no checkpoint (the tailer never
	// saved one).
	Found bool `json:"found"`
	// ResumeToken is the change-stream resume token (canonical Extended
	// JSON) the tailer resumes after.
	ResumeToken json.RawMessage `json:"resume_token,omitempty"`
	// ClusterTime is the cluster time the resume token stands for: it
	// advances on an idle stream too. When the token's shape is unknown,
	// it is LastEventClusterTime.
	ClusterTime *ClusterTime `json:"cluster_time,omitempty"`
	// LastEventClusterTime is the cluster time of the last event
	// published (nil before the first one).
	LastEventClusterTime *ClusterTime `json:"last_event_cluster_time,omitempty"`
	// SavedAt is when the checkpoint was written; AgeSeconds is now
	// minus SavedAt.
	SavedAt    *time.Time `json:"saved_at,omitempty"`
	AgeSeconds float64    `json:"age_seconds"`
	// Events counts events published since the checkpoint was created.
	Events uint64 `json:"events"`
	// Lease is who holds the checkpoint (the tailer's fence), since when,
	// and the last change of holder; nil without a checkpoint.
	Lease *TailerLease `json:"lease,omitempty"`
	Error string       `json:"error,omitempty"`
}

// Tailer lease states (TailerLease.State).
const (
	// LeaseHeld: the holder wrote the checkpoint within
	// tailer.standby_takeover.
	LeaseHeld = "held"
	// LeaseUnrenewed: the holder has not written it for longer than
	// tailer.standby_takeover: it is gone or stalled, and no standby has
	// taken over (yet).
	LeaseUnrenewed = "unrenewed"
	// LeaseReleased: the holder stopped gracefully; the next tailer takes
	// it over at once.
	LeaseReleased = "released"
	// LeaseHandoff: a snapshot's hand-off wrote it; the next tailer to
	// write owns it.
	LeaseHandoff = "handoff"
)

// TailerLease is the checkpoint's holder (checkpoint format v3; holders
// writing v1 or v2 leave HeldSince and LastTakeover unset).
type TailerLease struct {
	// Holder is the checkpoint's Owner ("<instance>:<pid>:<nonce>", a
	// snapshot's "snapshot:<host>:<pid>", "" in a v1 checkpoint).
	Holder string `json:"holder"`
	// State is LeaseHeld, LeaseUnrenewed, LeaseReleased or LeaseHandoff.
	State string `json:"state"`
	// HeldSince is when Holder's tenure began (its clock); HeldForSeconds
	// is the report's time minus it.
	HeldSince      *time.Time `json:"held_since,omitempty"`
	HeldForSeconds float64    `json:"held_for_seconds,omitempty"`
	// Takeovers counts the changes of holder the checkpoint recorded.
	Takeovers    uint64          `json:"takeovers"`
	LastTakeover *TailerTakeover `json:"last_takeover,omitempty"`
}

// TailerTakeover is one change of the checkpoint's holder.
type TailerTakeover struct {
	At         time.Time `json:"at"`
	AgoSeconds float64   `json:"ago_seconds"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	// Reason is "expired" (the previous holder left the checkpoint
	// unchanged for tailer.standby_takeover) or "released" (it stopped
	// gracefully).
	Reason string `json:"reason"`
	// QuietSeconds is how long the new holder saw the checkpoint unchanged
	// before it claimed it (expired only).
	QuietSeconds float64 `json:"quiet_seconds,omitempty"`
}

// OplogStatus is the checkpoint's place in MongoDB's oplog window.
type OplogStatus struct {
	Oldest *ClusterTime `json:"oldest,omitempty"`
	Newest *ClusterTime `json:"newest,omitempty"`
	// WindowSeconds is newest minus oldest: how much history the oplog
	// holds.
	WindowSeconds float64 `json:"window_seconds"`
	// HeadroomSeconds is checkpoint minus oldest: about how long the
	// tailer may stop before its checkpoint falls off the oplog. nil
	// without a checkpoint.
	HeadroomSeconds *float64 `json:"headroom_seconds"`
	// BehindSeconds is newest minus checkpoint: how far the tailer
	// trails MongoDB. nil without a checkpoint.
	BehindSeconds *float64 `json:"behind_seconds"`
	// Lost: the checkpoint is older than the oldest entry; resuming from
	// it fails with ChangeStreamHistoryLost (286).
	Lost bool `json:"lost"`
	// Low: headroom below oplog.headroom_warning.
	Low   bool   `json:"low"`
	Error string `json:"error,omitempty"`
}

// StreamStatus is a JetStream stream's state.
type StreamStatus struct {
	Name      string     `json:"name"`
	Messages  uint64     `json:"messages"`
	Bytes     uint64     `json:"bytes"`
	FirstSeq  uint64     `json:"first_seq"`
	LastSeq   uint64     `json:"last_seq"`
	FirstTime *time.Time `json:"first_time,omitempty"`
	LastTime  *time.Time `json:"last_time,omitempty"`
	Consumers int        `json:"consumers"`
	// Created is the stream's creation time, its identity, to the
	// microsecond (as the sink position records it: sink.stream_created).
	Created *time.Time `json:"created,omitempty"`
	Error   string     `json:"error,omitempty"`
}

// ConsumerStatus is the sink's durable consumer.
type ConsumerStatus struct {
	Name  string `json:"name"`
	Found bool   `json:"found"`
	// Pending: messages not yet delivered to the sink.
	Pending uint64 `json:"pending"`
	// AckPending: delivered, not yet acknowledged (in a batch being
	// applied, or waiting for a parent).
	AckPending  int `json:"ack_pending"`
	Redelivered int `json:"redelivered"`
	// Waiting pull requests: > 0 means a sink is pulling right now.
	Waiting int `json:"waiting_pulls"`
	// DeliveredSeq is the last stream sequence delivered; AckFloorSeq the
	// stream sequence at and below which everything is acknowledged.
	DeliveredSeq uint64 `json:"delivered_stream_seq"`
	AckFloorSeq  uint64 `json:"ack_floor_stream_seq"`
	Error        string `json:"error,omitempty"`
}

// SinkStatus is the sink's applied position (cdc.sink_positions).
type SinkStatus struct {
	Consumer string `json:"consumer"`
	// Found is false before the sink first took the consumer.
	Found bool `json:"found"`
	// StreamSeq is the applied floor: every stream sequence at or below
	// it is resolved in Postgres (applied, skipped by the version guard,
	// dead-lettered, or set aside as a deferred event).
	StreamSeq uint64 `json:"stream_seq"`
	// ClusterTime of the newest applied event.
	ClusterTime *ClusterTime `json:"cluster_time,omitempty"`
	AppliedAt   *time.Time   `json:"applied_at,omitempty"`
	// Stream and StreamCreated identify the stream StreamSeq belongs to
	// (StreamCreated nil: not recorded yet, the sink records it when it
	// starts on the stream). A stream of the same name with another
	// creation time is another stream: the position means nothing to it.
	Stream        string     `json:"stream,omitempty"`
	StreamCreated *time.Time `json:"stream_created,omitempty"`
	// Fence is who took the consumer last (nil when Found is false).
	Fence *FenceStatus `json:"fence,omitempty"`
	Error string       `json:"error,omitempty"`
}

// FenceStatus is the fence of the sink's consumer: the instance that took
// it last, as recorded in the position row (the record stays after the
// instance is gone), and whether a session holds its lock now.
type FenceStatus struct {
	// Owner is the instance (host:pid:nonce); "" when none took it yet.
	Owner string `json:"owner,omitempty"`
	// Epoch counts the takings; a batch commits only under the row's
	// epoch.
	Epoch int64 `json:"epoch"`
	// Since is when Owner took it.
	Since *time.Time `json:"since,omitempty"`
	// Held: a session holds the fence's lock now, so a sink instance
	// applies the consumer. nil when it could not be read (Error says
	// why).
	Held  *bool  `json:"held"`
	Error string `json:"error,omitempty"`
}

// DeferredStatus summarises cdc.deferred_events for the sink's consumer:
// events the position has passed that are not applied yet.
type DeferredStatus struct {
	// Waiting: events whose parent (policy wait) has not arrived.
	Waiting int64 `json:"waiting"`
	// TxnParts: parts of Mongo transactions whose other events have not
	// all arrived.
	TxnParts int64 `json:"txn_parts"`
	// Bytes of their stored envelopes.
	Bytes int64 `json:"bytes"`
	// Oldest is when the oldest of them was first set aside;
	// OldestAgeSeconds is now minus Oldest (0 when there are none).
	Oldest           *time.Time `json:"oldest,omitempty"`
	OldestAgeSeconds float64    `json:"oldest_age_seconds"`
	Error            string     `json:"error,omitempty"`
}

// LagStatus is how far Postgres trails the stream (see the package
// documentation).
type LagStatus struct {
	// Events is the stream's last sequence minus the applied floor.
	Events uint64 `json:"events"`
	// Seconds is now minus the newest applied cluster time when Events >
	// 0, else 0.
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

// DeadLetterStatus counts open dead letters.
type DeadLetterStatus struct {
	Open  int64             `json:"open"`
	Count []DeadLetterCount `json:"by_collection"`
	Error string            `json:"error,omitempty"`
}

// DeadLetterCount is the open dead letters of one collection and class.
type DeadLetterCount struct {
	Collection string `json:"collection"`
	Class      string `json:"class"`
	Count      int64  `json:"count"`
}

// CollectionsStatus is the per-collection counts.
type CollectionsStatus struct {
	// Skipped is true when counting was turned off (--no-counts).
	Skipped bool              `json:"skipped,omitempty"`
	Items   []CollectionCount `json:"items"`
	// PostgresError and MongoError say why a side is missing.
	PostgresError string `json:"postgres_error,omitempty"`
	MongoError    string `json:"mongo_error,omitempty"`
	Error         string `json:"error,omitempty"`
}

// CollectionCount is one replicated collection. A nil count was not
// measured.
type CollectionCount struct {
	Collection string `json:"collection"`
	Table      string `json:"table"`
	// Rows in the target table; LiveRows excludes soft-deleted rows
	// (soft-delete mappings only).
	Rows     *int64 `json:"rows"`
	LiveRows *int64 `json:"live_rows,omitempty"`
	// DocVersions are the version-guard entries of live documents;
	// Tombstones those of deleted ones.
	DocVersions *int64 `json:"doc_versions"`
	Tombstones  *int64 `json:"tombstones"`
	// Mongo is countDocuments of the source collection.
	Mongo *int64 `json:"mongo"`
	Error string `json:"error,omitempty"`
}

// LanesStatus is the sink lanes (sink.lanes): each lane's stream,
// position and fence, and the live sink instances with the lanes the
// members' assignment gives each. nil (absent from the JSON) without
// lanes.
type LanesStatus struct {
	// MembersBucket is the KV bucket of the live sink instances
	// (pkg/sink.MembersBucket).
	MembersBucket string `json:"members_bucket"`
	// Members are the live instances (their keys have not expired),
	// sorted by owner; MembersError says why they could not be read.
	Members      []LaneMember `json:"members"`
	MembersError string       `json:"members_error,omitempty"`
	Items        []LaneStatus `json:"items"`
	// Layout is this configuration's sink.lanes in canonical form
	// (bus.StreamsConfig.Layout), which every lane stream should carry.
	Layout string `json:"layout"`
}

// LaneMember is one live sink instance.
type LaneMember struct {
	// Owner is the instance (host:pid:nonce), as its fences record it.
	Owner string `json:"owner"`
	// Lanes are the lanes the rendezvous assignment over the live members
	// gives it (it runs their sinks; it applies those whose fence it
	// holds).
	Lanes []string `json:"lanes"`
}

// LaneStatus is one lane.
type LaneStatus struct {
	Name        string   `json:"name"`
	Collections []string `json:"collections"`
	// Stream is the lane's stream (<nats.stream>_<lane>); LastSeq its last
	// sequence; StreamError why it could not be read.
	Stream   string `json:"stream"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Messages uint64 `json:"messages"`
	// StreamCreated is the lane stream's identity (see
	// StreamStatus.Created).
	StreamCreated *time.Time `json:"stream_created,omitempty"`
	StreamError   string     `json:"stream_error,omitempty"`
	// StreamLayout is the lane layout stamped on the stream by the last
	// process that declared it ("" before any did).
	StreamLayout string `json:"stream_layout,omitempty"`
	// AssignedTo is the live member the assignment gives the lane ("":
	// no live member).
	AssignedTo string `json:"assigned_to"`
	// Position is the lane's row in cdc.sink_positions (consumer
	// <sink.consumer>_<lane>) and its fence: owner, epoch, since, held.
	Position SinkStatus `json:"position"`
	Lag      LagStatus  `json:"lag"`
}
