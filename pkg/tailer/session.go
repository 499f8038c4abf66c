package tailer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/event"
)

// pending is one published item awaiting its JetStream ack: an event, or
// (ack == nil) a post-batch token that becomes durable once everything
// before it is.
type pending struct {
	ack jetstream.PubAckFuture
	// token is the resume token after this item; nil when the item must
	// not become a checkpoint (an event inside a transaction).
	token bson.Raw
	ct    event.ClusterTime
	coll  string
	isEvt bool
	// startAfter marks an invalidate's token: a stream resumes after it
	// only with startAfter.
	startAfter bool
	// size approximates the published message's bytes (MaxInFlightBytes).
	size int64
}

// state is one change-stream session's bookkeeping.
type state struct {
	queue []pending
	// queueBytes is the sum of the queue's sizes.
	queueBytes int64
	durable    *point // newest position whose items are all acked
	lastSave   time.Time
	// lost is set once a write found the checkpoint moved: this session
	// writes no more.
	lost bool
	// refused is the first publish JetStream did not acknowledge.
	refused error
	// start is the token the session resumed from; advanced is set once a
	// later one was saved: the session progressed (Mongo and NATS both
	// work), and Run's backoff starts again from its minimum.
	start    bson.Raw
	advanced bool
	events   uint64
	// txns numbers transaction events and holds each transaction's
	// newest one until the next change (or an idle stream) says whether it
	// is the last.
	txns event.TxnSequencer
	// fragments are the fragments read so far of a split event; while
	// there are any, no token may become a checkpoint.
	fragments []bson.Raw
	// rounds counts answered TryNext calls: a session that read from its
	// stream and then saved is healthy.
	rounds int
	// pub builds and sends this session's messages (bus.Publisher: the
	// one publisher of tailer, snapshot and replay), routing each event
	// to its sink lane (a transaction whole to its first event's lane).
	// One per session: a session starts at a transaction boundary (no
	// checkpoint inside one), so its router sees every transaction's
	// first event.
	pub *bus.Publisher
	// layoutChecked is when the lane layout stamped on the streams was
	// last compared with this tailer's (bus.CheckLaneLayout).
	layoutChecked time.Time
}

// drain pops acknowledged items from the head of the queue, advancing the
// durable checkpoint. It blocks while the queue is over MaxInFlight (or,
// with all=true, until the queue is empty). Once a publish was refused,
// nothing after it can become durable: drain returns that refusal again at
// once (an ack future delivers its error only once, so waiting on it again
// would block until ctx ends).
func (t *Tailer) drain(ctx context.Context, st *state, all bool) error {
	if st.refused != nil {
		return st.refused
	}
	for len(st.queue) > 0 {
		head := st.queue[0]
		if head.ack != nil {
			mustWait := all || len(st.queue) > t.cfg.MaxInFlight ||
				(t.cfg.MaxInFlightBytes > 0 && st.queueBytes > t.cfg.MaxInFlightBytes)
			if mustWait {
				select {
				case <-head.ack.Ok():
				case err := <-head.ack.Err():
					st.refused = t.refused(ctx, st, head.ack, err)
					return st.refused
				case <-ctx.Done():
					return ctx.Err()
				}
			} else {
				select {
				case <-head.ack.Ok():
				case err := <-head.ack.Err():
					st.refused = t.refused(ctx, st, head.ack, err)
					return st.refused
				default:
					return nil
				}
			}
			t.roomAgain()
			st.events++
			t.metrics.EventPublished(head.coll)
		}
		st.queue = st.queue[1:]
		st.queueBytes -= head.size
		if head.token != nil {
			ct := head.ct
			if !head.isEvt && st.durable != nil {
				ct = st.durable.ct
			}
			// Only the raw token here: rendering it is left to save().
			st.durable = &point{tok: head.token, ct: ct, events: st.events, startAfter: head.startAfter}
		}
	}
	return nil
}

// point is a resume position whose events are all acknowledged.
type point struct {
	tok    bson.Raw
	ct     event.ClusterTime
	events uint64
	// startAfter: tok is an invalidate's token.
	startAfter bool
}

// checkpoint renders p for storage; nil for a nil point.
func (p *point) checkpoint() *checkpoint.Checkpoint {
	if p == nil {
		return nil
	}
	js, err := bson.MarshalExtJSON(p.tok, true, false)
	if err != nil {
		js = []byte("null")
	}
	return &checkpoint.Checkpoint{V: checkpoint.Version, Token: json.RawMessage(js), ClusterTime: p.ct, Events: p.events, StartAfter: p.startAfter}
}

// save writes the durable position (again, when it has not moved: the
// heartbeat), checked against the lease. A session that started without a
// checkpoint creates the first one, never overwrites one, so a checkpoint a
// snapshot's hand-off wrote meanwhile wins and this session restarts from
// it. release marks a graceful stop's last write.
func (t *Tailer) save(ctx context.Context, st *state, release bool) error {
	st.lastSave = t.clock.Now()
	if st.durable == nil || st.lost {
		return nil
	}
	cp := st.durable.checkpoint()
	cp.Released = release
	if err := t.write(ctx, cp); err != nil {
		if errors.Is(err, checkpoint.ErrMoved) {
			st.lost = true
		}
		return err
	}
	if !bytes.Equal(st.start, st.durable.tok) {
		st.advanced = true
	}
	if st.rounds > 0 {
		t.healthy()
	}
	// The effective time, not the last event's: the token's own time
	// moves on an idle stream too (post-batch tokens).
	t.metrics.CheckpointSaved(cp.EffectiveTime())
	return nil
}

// finish waits (bounded) for outstanding acks and saves what is durable;
// release marks the checkpoint free for the next tailer (graceful stop).
func (t *Tailer) finish(ctx context.Context, st *state, release bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A held transaction event is not released: its transaction may be
	// incomplete, and the checkpoint stays before it.
	derr := t.drain(ctx, st, true)
	if err := t.save(ctx, st, release); err != nil {
		return err
	}
	return derr
}
