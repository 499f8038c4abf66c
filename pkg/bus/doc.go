// Package bus is the JetStream side of the replicator: the embedded
// single-node server, connections that reconnect forever, the declaration
// of the change and dead-letter streams (idempotent create-or-update), the
// subjects events are published on, the one publisher of change events
// (Publisher, publish.go: the tailer, snapshot and replay build every
// message through it), and the tailer's checkpoint bucket.
//
// The stream is the durable log between tailer and sink: file storage, a
// Nats-Msg-Id dedup window, and age/size retention from configuration.
// Declarations run at every start, so a changed retention in the config
// reaches the server without an operator touching it.
//
// A size-limited change stream never discards what the sink has not
// applied: it refuses new events when full (discard policy new), the
// publisher sees a *StreamFullError (ClassifyPublishError) and retries from
// its checkpoint, and the sink frees space with TrimApplied, which purges
// only messages at or below its applied position. Age (max_age) removes
// messages whatever the discard policy, so it must outlast any sink outage.
package bus
