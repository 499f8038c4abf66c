package tailer

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/event"
)

// Lifecycle events are the change-stream events that change a collection
// or the database rather than a document. What a database-level change
// stream (db.watch) sends, per the server
// (src/mongo/db/pipeline/change_stream_event_transform.cpp and
// https://www.mongodb.com/docs/manual/reference/change-events/):
//
//   - drop: a collection was dropped; ns is {db, coll}. A database-level
//     stream is not invalidated by it.
//   - rename: ns is the source, to the target {db, coll}; with
//     renameCollection(..., {dropTarget: true}) (and mongorestore --drop,
//     the rebuild-and-swap pattern) the target's documents are replaced
//     without any per-document event. Not invalidating either.
//   - dropDatabase: ns is {db} only (no coll), after a drop per
//     collection; it is followed by invalidate.
//   - invalidate: no ns.coll; the server closes the cursor after it
//     (cursor id 0) and the post-batch token is the invalidate token. A
//     stream can only start after it with startAfter: resumeAfter an
//     invalidate token fails with InvalidResumeToken (260)
//     (jstests/change_streams/start_after_invalidation_exception.js).
//
// The pipeline lets them through (matchStage): none of them is filtered
// out by ns.coll. The default and only policy is stop: the tailer
// publishes and checkpoints every change before the event, then stops with
// a *LifecycleError naming what happened, what Postgres holds and the
// recovery. A restart from the checkpoint meets the same event and stops
// again with the same message, until the recovery ran: a complete snapshot
// of the affected collections started after the event (Config.Covered).
// Then the tailer passes the event (an invalidate by a new change stream
// opened with startAfter its token).

// LifecycleOp is what a lifecycle event did.
type LifecycleOp string

// Lifecycle operations, as operationType names them (LifecycleRenamedOnto
// is a rename whose target is a replicated collection).
const (
	LifecycleDrop         LifecycleOp = "drop"
	LifecycleRenamed      LifecycleOp = "rename"
	LifecycleRenamedOnto  LifecycleOp = "rename onto"
	LifecycleDropDatabase LifecycleOp = "dropDatabase"
	LifecycleInvalidate   LifecycleOp = "invalidate"
)

// LifecycleEvent is one lifecycle event the tailer met.
type LifecycleEvent struct {
	Op LifecycleOp
	// Coll is the replicated collection affected (the source of a rename
	// away, the target of a rename onto); "" for dropDatabase/invalidate.
	Coll string
	// From and To are a rename's source and target collections.
	From, To string
	// ClusterTime is the event's cluster time.
	ClusterTime event.ClusterTime
	// Token is the event's resume token.
	Token bson.Raw
}

// affected lists the replicated collections the event changes.
func (e LifecycleEvent) affected(all []string) []string {
	if e.Coll == "" {
		return all
	}
	return []string{e.Coll}
}

// lifecycleOf recognises a lifecycle event in raw (a change document) and
// says which replicated collection it affects. ok is false for document
// changes and for events that do not concern the replicated collections.
// A rename between two replicated collections is reported as the rename
// away from the source (both are affected; the message names both).
func lifecycleOf(raw bson.Raw, watched []string) (LifecycleEvent, bool) {
	op, _ := raw.Lookup("operationType").StringValueOK()
	var ev LifecycleEvent
	if ts, i, ok := raw.Lookup("clusterTime").TimestampOK(); ok {
		ev.ClusterTime = event.ClusterTime{T: ts, I: i}
	}
	if tok, ok := raw.Lookup("_id").DocumentOK(); ok {
		ev.Token = tok
	}
	coll, _ := raw.Lookup("ns", "coll").StringValueOK()
	switch op {
	case "drop":
		if !slices.Contains(watched, coll) {
			return ev, false
		}
		ev.Op, ev.Coll = LifecycleDrop, coll
	case "rename":
		to, _ := raw.Lookup("to", "coll").StringValueOK()
		ev.From, ev.To = coll, to
		switch {
		case slices.Contains(watched, coll):
			ev.Op, ev.Coll = LifecycleRenamed, coll
		case slices.Contains(watched, to):
			ev.Op, ev.Coll = LifecycleRenamedOnto, to
		default:
			return ev, false
		}
	case "dropDatabase":
		ev.Op = LifecycleDropDatabase
	case "invalidate":
		ev.Op = LifecycleInvalidate
	default:
		return ev, false
	}
	return ev, true
}

// matchStage is the server-side filter: the replicated collections'
// document changes, drops and renames (by source ns.coll and by target
// to.coll), and every dropDatabase and invalidate (they have no ns.coll).
func matchStage(colls []string) bson.D {
	in := bson.D{{Key: "$in", Value: colls}}
	return bson.D{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{
		bson.D{
			{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "update", "replace", "delete", "drop", "rename"}}}},
			{Key: "ns.coll", Value: in},
		},
		bson.D{{Key: "operationType", Value: "rename"}, {Key: "to.coll", Value: in}},
		bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"dropDatabase", "invalidate"}}}}},
	}}}}}
}

// CoveredFunc reports whether a complete snapshot of colls started after
// at (so Postgres was reloaded from the state after a lifecycle event at
// at), and names it for the log. app wires it to the snapshot progress
// record.
type CoveredFunc func(ctx context.Context, colls []string, at event.ClusterTime) (by string, ok bool, err error)

// LifecycleError stops the tailer at a lifecycle event (fatal; exit 1).
// The checkpoint is right before Events[0]: a restart meets it again.
type LifecycleError struct {
	Database string
	// Events are the lifecycle event the tailer stopped at and those that
	// followed it at once (a dropDatabase comes after a drop per
	// collection).
	Events []LifecycleEvent
	// Collections are every replicated collection.
	Collections []string
}

// dbDropped reports whether the events include a dropDatabase or an
// invalidate.
func (e *LifecycleError) dbDropped() bool {
	for _, ev := range e.Events {
		if ev.Op == LifecycleDropDatabase || ev.Op == LifecycleInvalidate {
			return true
		}
	}
	return false
}

// Affected lists the replicated collections the events changed, sorted.
func (e *LifecycleError) Affected() []string {
	var out []string
	for _, ev := range e.Events {
		for _, c := range ev.affected(e.Collections) {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (e *LifecycleError) Error() string {
	if len(e.Events) == 0 {
		return fmt.Sprintf("change stream on %q: lifecycle stop without an event", e.Database)
	}
	first := e.Events[0]
	colls := e.Affected()
	var what, holds string
	switch {
	case e.dbDropped():
		what = fmt.Sprintf("database %q was dropped (dropDatabase at cluster time %s; the change stream was invalidated)", e.Database, first.ClusterTime)
		holds = fmt.Sprintf("Postgres still holds the rows of %s as they were just before the drop (their last state)", strings.Join(colls, ", "))
	case first.Op == LifecycleDrop:
		what = fmt.Sprintf("collection %s.%s was dropped (drop at cluster time %s)", e.Database, first.Coll, first.ClusterTime)
		holds = fmt.Sprintf("Postgres still holds the rows of %s as they were just before the drop (its last state)", first.Coll)
	case first.Op == LifecycleRenamed:
		what = fmt.Sprintf("collection %s.%s was renamed to %s.%s (rename at cluster time %s)", e.Database, first.From, e.Database, first.To, first.ClusterTime)
		holds = fmt.Sprintf("Postgres still holds the rows of %s as they were just before the rename (its last state under that name)", first.From)
	default: // renamed onto
		what = fmt.Sprintf("collection %s.%s was renamed onto the replicated collection %s.%s (rename at cluster time %s, renameCollection with dropTarget or mongorestore --drop): "+
			"%s now holds %s's former documents, for which the change stream sends no per-document events", e.Database, first.From, e.Database, first.To, first.ClusterTime, first.To, first.From)
		holds = fmt.Sprintf("Postgres holds the rows %s had before the rename, not its documents now", first.To)
	}
	list := strings.Join(colls, ",")
	var stale strings.Builder
	for i, c := range colls {
		if i > 0 {
			stale.WriteString("; ")
		}
		fmt.Fprintf(&stale, "psql -Atc \"SELECT legacy_object_id FROM id_map WHERE collection = '%s'\" > %s.ids && cdc replay ids --collection %s --ids-file %s.ids", c, c, c, c)
	}
	return fmt.Sprintf("change stream on %q stopped: %s. The tailer published and checkpointed every change before it and will not pass it on its own "+
		"(a restart stops here again). %s. Recovery: "+
		"(1) delete the rows whose documents are gone: %s (documents no longer in MongoDB are published as deletes); "+
		"(2) reload the collections from their state now: cdc snapshot --collections %s --no-wait-tailer; "+
		"(3) restart: the tailer passes the event once a complete snapshot of %s started after it. "+
		"If instead the collections are no longer to be replicated, remove them from mongo.collections (or their transforms) and restart",
		e.Database, what, holds, stale.String(), list, list)
}

// lifecycle handles a lifecycle event first (already read from cs): when
// a complete snapshot covers it, the event's token becomes a resume point
// and the session goes on (an invalidate ends the session: restart is
// errRestart, and the next one opens with startAfter). Otherwise it
// gathers the lifecycle events that follow at once (for the message) and
// returns the *LifecycleError; the checkpoint stays before first.
func (t *Tailer) lifecycle(ctx context.Context, st *state, cs *mongo.ChangeStream, first LifecycleEvent) error {
	if err := t.releaseHeld(ctx, st); err != nil {
		return err
	}
	if t.cfg.Covered != nil {
		by, ok, err := t.cfg.Covered(ctx, first.affected(t.cfg.Collections), first.ClusterTime)
		if err != nil {
			return fmt.Errorf("lifecycle event %s at %s: check for a covering snapshot: %w", first.Op, first.ClusterTime, err)
		}
		if ok {
			t.log.Warn(fmt.Sprintf("passing the %s of %s at cluster time %s: %s reloaded it afterwards", first.Op, strings.Join(first.affected(t.cfg.Collections), ","), first.ClusterTime, by))
			inv := first.Op == LifecycleInvalidate
			st.queue = append(st.queue, pending{token: cloneRaw(first.Token), startAfter: inv})
			if inv {
				return errRestart
			}
			return nil
		}
		t.log.Warn("no complete snapshot covers the lifecycle event", zap.String("operation", string(first.Op)),
			zap.Stringer("cluster_time", first.ClusterTime), zap.String("last_snapshot", by))
	}
	lerr := &LifecycleError{Database: t.cfg.Database, Events: []LifecycleEvent{first}, Collections: t.cfg.Collections}
	// What follows at once belongs to the same operation (a dropDatabase
	// after its drops); stop gathering at a document change, an idle or
	// ended stream, or after a bounded number.
	for len(lerr.Events) < 64 && first.Op != LifecycleInvalidate && cs != nil && cs.TryNext(ctx) {
		ev, ok := lifecycleOf(cs.Current, t.cfg.Collections)
		if !ok {
			break
		}
		lerr.Events = append(lerr.Events, ev)
		if ev.Op == LifecycleInvalidate {
			break
		}
	}
	return lerr
}
