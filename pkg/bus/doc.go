// Package bus is the JetStream side of the replicator: the embedded
// single-node server, connections that reconnect forever, the declaration
// of the change and dead-letter streams (idempotent create-or-update), the
// subjects events are published on, and the tailer's checkpoint bucket.
//
// The stream is the durable log between tailer and sink: file storage, a
// Nats-Msg-Id dedup window, and age/size retention from configuration.
// Declarations run at every start, so a changed retention in the config
// reaches the server without an operator touching it.
package bus
