// Package status reads the replicator's positions from where they are
// stored and reports them: the tailer's checkpoint (KV bucket
// cdc_checkpoints), the oplog window it must stay inside, the change and
// dead-letter streams, the sink's durable consumer, the sink's applied
// position in cdc.sink_positions (with the stream it belongs to and its
// fence), the events the position passed but not yet applied
// (cdc.deferred_events), open dead letters, and per-collection counts in
// Postgres and MongoDB. `cdc status` prints the Report. Its reads of the
// cdc.* tables are pkg/state's (ReadPosition, ReadDeferredStats,
// OpenDeadLetterCounts, DocVersionCounts, FenceHeld).
//
// It reads stored state only, so it works the same whether the daemon is
// running or not. With an external NATS (nats.url) it connects to it. With
// the embedded server it first connects to the daemon's server at
// nats.embedded.host:port; when nothing listens there (and the daemon's
// HTTP endpoint does not answer either), the daemon is down and Open
// starts a temporary embedded server on the same store directory, on a
// free port, to read the stored streams, consumer and checkpoint, and
// shuts it down in Close. Open never starts that server while something
// listens on the daemon's port or HTTP address: two servers on one store
// would corrupt it.
//
// One unreachable system never hides the others: each section carries its
// own error ("unknown: <error>" in the text form) and the report lists
// every problem. Report.Healthy is false when any system is unreachable,
// the daemon is down, or the stored state needs an operator (missing
// checkpoint or consumer, checkpoint off the oplog or low on headroom,
// open dead letters, a gap between the sink's position and the stream, a
// stream re-created under the position (its creation time is not the one
// the position records), lag over the limit asked for). Warnings do not
// make it unhealthy: deferred events older than DeferredWarnAge. The
// fence is reported as recorded (who took the consumer last, its epoch,
// since when) and whether its lock is held now; neither a fresh install
// without a holder nor a free lock (the daemon is down, or stands by) is a
// problem.
//
// # Lag
//
// Sink lag is how far PostgreSQL trails the change stream:
//
//   - lag.events: the stream's last sequence minus the sink's applied
//     floor (cdc.sink_positions.stream_seq, every event at or below it is
//     applied, skipped, dead-lettered or deferred). 0 when the sink has
//     passed everything the stream holds; deferred events are counted in
//     the deferred section, not here.
//   - lag.seconds: when lag.events > 0, now minus the cluster time of the
//     newest applied event (cdc.sink_positions.cluster_time); 0 when
//     nothing is pending, so an idle source is not lag. It is how stale
//     Postgres is, at most: a change committed in MongoDB more than this
//     long ago is in Postgres.
//
// Tailer lag is oplog.behind_seconds: the newest oplog entry minus the
// tailer's checkpoint, how far the change stream reader trails MongoDB.
// The same definitions back the cdc_replication_lag_seconds and
// cdc_replication_lag_events metrics (there, events are the consumer's
// pending plus unacknowledged messages).
//
// # Lanes
//
// With sink.lanes configured (lanes.go) the default stream is not
// declared, so the stream, consumer and sink sections say "per lane" and
// the lanes section (JSON "lanes", absent without lanes) has, per lane,
// its stream <nats.stream>_<lane> and last sequence, its position row
// <sink.consumer>_<lane> with the fence (owner, epoch, since, lock held),
// its lag as above, and the member the rendezvous assignment gives it;
// and the live members of the members bucket with the lanes each is
// given. lag sums the lanes' events and takes the largest of their
// seconds; deferred sums the lanes' consumers. Each lane's position is
// judged as the sink's is; a lane no live member is given warns. The
// per-lane metrics are cdc_sink_lane_assigned, cdc_sink_lane_active,
// cdc_sink_lane_lag_events and cdc_sink_lane_last_applied_cluster_time_seconds.
package status
