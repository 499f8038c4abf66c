package tailer

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
)

// handleChange handles cs.Current: a fragment of a split event (held until
// the last one), a lifecycle event, or a document change.
func (t *Tailer) handleChange(ctx context.Context, st *state, cs *mongo.ChangeStream) error {
	raw := cs.Current
	_, of, split, err := splitInfo(raw)
	if err != nil {
		return fault.Fatal.Errorf("tailer: %w", err)
	}
	if split {
		st.fragments = append(st.fragments, cloneRaw(raw))
		if len(st.fragments) < int(of) {
			return nil
		}
		whole, err := reassemble(st.fragments)
		st.fragments = nil
		if err != nil {
			return fault.Fatal.Errorf("tailer: %w", err)
		}
		raw = whole
	} else if len(st.fragments) > 0 {
		return fault.Fatal.Errorf("tailer: %w: %d of %d fragments, then an unsplit event", ErrSplitEvent, len(st.fragments), of)
	}
	if lc, ok := lifecycleOf(raw, t.cfg.Collections); ok {
		return t.lifecycle(ctx, st, cs, lc)
	}
	ev, txn, err := event.FromChange(raw)
	if errors.Is(err, event.ErrNotDataChange) {
		// Not let through by the pipeline (a drop or rename of another
		// collection cannot match it): log, and make it a resume point.
		op, _ := raw.Lookup("operationType").StringValueOK()
		coll, _ := raw.Lookup("ns", "coll").StringValueOK()
		t.log.Warn("change stream reported a change the tailer does not replicate", zap.String("operation", op),
			zap.String("database", t.cfg.Database), zap.String("collection", coll))
		if err := t.releaseHeld(ctx, st); err != nil {
			return err
		}
		if tok, ok := raw.Lookup("_id").DocumentOK(); ok {
			st.queue = append(st.queue, pending{token: cloneRaw(tok)})
		}
		return nil
	}
	if err != nil {
		return fault.Fatal.Errorf("tailer: %w", err)
	}
	t.metrics.EventRead(ev.Source.Coll, ev.Op)
	return t.publishAll(ctx, st, st.txns.Add(ev, txn, cloneRaw(raw.Lookup("_id").Document())))
}

// releaseHeld publishes the held transaction event as its transaction's
// last.
func (t *Tailer) releaseHeld(ctx context.Context, st *state) error {
	return t.publishAll(ctx, st, st.txns.Flush())
}

func (t *Tailer) publishAll(ctx context.Context, st *state, evs []event.Sequenced) error {
	for _, s := range evs {
		if err := t.publish(ctx, st, s.Event, s.Token); err != nil {
			return err
		}
	}
	return nil
}

// publish sends one event, once the lease check passed (lease.go),
// stamped with this tailer's identity (HeaderTailer).
func (t *Tailer) publish(ctx context.Context, st *state, ev *event.Event, tok bson.Raw) error {
	if err := t.mayPublish(ctx, st); err != nil {
		return err
	}
	if st.pub == nil {
		// The message's form (subject, lane, Nats-Msg-Id, Content-Type,
		// large-event pointer) is the bus publisher's; the tailer adds
		// its identity (HeaderTailer) and keeps its own in-flight window:
		// drain waits on the futures, which are its checkpoint queue.
		st.pub = bus.NewPublisher(t.js, t.cfg.Streams, bus.WithHeader(HeaderTailer, t.cfg.Owner))
	}
	out, err := st.pub.Prepare(ev)
	if err != nil {
		return fault.Fatal.Wrap(err) // a collection in no lane, an envelope that does not encode
	}
	if out.Oversize {
		// Larger than max_payload: the envelope goes to the large-event
		// object store first (stored when StoreLarge returns), then its
		// pointer is published like any event. A store failure is
		// retryable: return it, the tailer resumes from its checkpoint
		// and republishes (the object is reused, the pointer deduped).
		// The put is bounded by its own timeout, not cut short by ctx.
		size := len(out.Msg.Data)
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bus.LargePutTimeout)
		err = st.pub.StoreLarge(pctx, &out)
		cancel()
		if err != nil {
			return fmt.Errorf("publish %s: %w", ev.ID, err)
		}
		t.log.Info("change larger than the bus's max_payload: stored in the large-event object store, its pointer published",
			zap.String("event_id", ev.ID), zap.String("collection", ev.Source.Coll), zap.Int("bytes", size),
			zap.Int64("max_payload", t.js.Conn().MaxPayload()), zap.String("object", out.Msg.Header.Get(bus.HeaderLargeObject)))
		// Storing a large object can take seconds: check the lease again
		// before its pointer goes out.
		if err := t.checkLease(ctx, st); err != nil {
			return err
		}
	}
	ack, err := st.pub.PublishAsync(out)
	if err != nil {
		return fmt.Errorf("publish %s: %w", ev.ID, err)
	}
	msg := out.Msg
	size := int64(len(msg.Data) + len(msg.Subject) + 256) // the headers are small and bounded
	st.queue = append(st.queue, pending{ack: ack, token: tok, ct: ev.Source.ClusterTime, coll: ev.Source.Coll, isEvt: true, size: size})
	st.queueBytes += size
	return nil
}
