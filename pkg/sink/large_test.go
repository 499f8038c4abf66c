package sink_test

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// newLargeEnv is newEnv on a bus whose max_payload is 1 MiB.
func newLargeEnv(t *testing.T) *env { return newEnvMaxPayload(t, 1<<20) }

// publishAsTailer publishes ev exactly as the tailer's publish does:
// bus.EventMsg, and for an oversize envelope bus.StoreLarge before the
// asynchronous publish of the pointer. It returns the message published.
func (e *env) publishAsTailer(ev *event.Event) jetstream.PubAck {
	e.t.Helper()
	msg, oversize, err := bus.EventMsg(e.streams, ev, e.nc.MaxPayload())
	if err != nil {
		e.t.Fatal(err)
	}
	if oversize {
		if msg, err = bus.StoreLarge(e.ctx, e.js, e.streams, ev, msg); err != nil {
			e.t.Fatal(err)
		}
	}
	f, err := e.js.PublishMsgAsync(msg, jetstream.WithExpectStream(e.streams.Stream))
	if err != nil {
		e.t.Fatal(err)
	}
	select {
	case ack := <-f.Ok():
		return *ack
	case err := <-f.Err():
		e.t.Fatalf("publish %s: %v", ev.ID, err)
	case <-time.After(30 * time.Second):
		e.t.Fatalf("publish %s: no ack within 30s", ev.ID)
	}
	return jetstream.PubAck{}
}

// bigText is n characters of random hex.
func bigText(t *testing.T, n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)[:n]
}

// update is an update event of doc at ct with its pre-image.
func (e *env) update(coll string, doc, pre bson.D, ct event.ClusterTime) *event.Event {
	ev := e.ev(coll, doc, ct, nil)
	raw, err := bson.Marshal(pre)
	if err != nil {
		e.t.Fatal(err)
	}
	upd, _ := bson.Marshal(bson.D{{Key: "avatarUrl", Value: "changed"}})
	ev.Op, ev.Pre, ev.Update = event.OpUpdate, raw, &event.UpdateDescription{Updated: upd}
	return ev
}

// A 20 MB change (an update of a 10 MB document with its 10 MB
// pre-image) on a bus whose max_payload is 1 MB is published the way the
// tailer publishes it and applies exactly; one whose object is gone is
// dead-lettered with the reason and the recovery, and the sink goes on.
func TestLargeEventAppliesExactly(t *testing.T) {
	e := newLargeEnv(t)
	big, lost := bson.NewObjectID(), bson.NewObjectID()
	e.publishAsTailer(e.ev("users", e.userDoc(big, "big@example.com"), e.next(), nil))
	e.publishAsTailer(e.ev("users", e.userDoc(lost, "lost@example.com"), e.next(), nil))

	avatar := bigText(t, 10<<20)
	doc := append(e.userDoc(big, "big@example.com"), bson.E{Key: "avatarUrl", Value: avatar})
	pre := append(e.userDoc(big, "big@example.com"), bson.E{Key: "avatarUrl", Value: bigText(t, 10<<20)})
	ev := e.update("users", doc, pre, e.next())
	full, _ := ev.Marshal()
	if int64(len(full)) < 20<<20 || int64(len(full)) <= e.nc.MaxPayload() {
		t.Fatalf("test event is %d bytes, want over 20 MB and max_payload %d", len(full), e.nc.MaxPayload())
	}
	e.publishAsTailer(ev)

	// The second large change loses its object before the sink reads it.
	gone := e.update("users", append(e.userDoc(lost, "lost@example.com"), bson.E{Key: "avatarUrl", Value: bigText(t, 2<<20)}),
		e.userDoc(lost, "lost@example.com"), e.next())
	msg, oversize, err := bus.EventMsg(e.streams, gone, e.nc.MaxPayload())
	if err != nil || !oversize {
		t.Fatalf("second large event: oversize %v, %v", oversize, err)
	}
	if msg, err = bus.StoreLarge(e.ctx, e.js, e.streams, gone, msg); err != nil {
		t.Fatal(err)
	}
	obs, err := e.js.ObjectStore(e.ctx, e.streams.LargeBucket())
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Delete(e.ctx, msg.Header.Get(bus.HeaderLargeObject)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(e.ctx, msg); err != nil {
		t.Fatal(err)
	}
	after := bson.NewObjectID()
	e.publishAsTailer(e.ev("users", e.userDoc(after, "after@example.com"), e.next(), nil))

	r := e.start(e.config("a"))
	defer r.stop(t)
	e.waitCount("the event after both large ones applied", 1, `SELECT count(*) FROM users u JOIN id_map m ON m.new_id = u.id AND m.collection = 'users' WHERE m.legacy_object_id = $1`, after.Hex())
	var got string
	if err := e.pool.QueryRow(e.ctx, `SELECT u.avatar_url FROM users u JOIN id_map m ON m.new_id = u.id AND m.collection = 'users' WHERE m.legacy_object_id = $1`, big.Hex()).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != avatar {
		t.Fatalf("avatar_url of the 20 MB change: %d characters, want the %d written (equal: %v)", len(got), len(avatar), got == avatar)
	}
	var class, reason string
	if err := e.pool.QueryRow(e.ctx, `SELECT error_class, reason FROM cdc.dead_letters WHERE event_id = $1`, gone.ID).Scan(&class, &reason); err != nil {
		t.Fatalf("the event whose object is gone was not dead-lettered: %v", err)
	}
	if !strings.Contains(reason, "cdc replay ids") || !strings.Contains(reason, lost.Hex()) || !strings.Contains(reason, "missing") {
		t.Fatalf("dead letter %s: %q does not name the document, the cause and the recovery", class, reason)
	}
	if n := e.count(`SELECT count(*) FROM cdc.dead_letters`); n != 1 {
		t.Fatalf("%d dead letters, want only the one whose object is gone", n)
	}
}
