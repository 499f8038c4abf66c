package sink_test

import (
	"testing"

	"github.com/amanat/cdc/pkg/bus"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// deadLetterAt returns the stream and stream sequence of the dead letter
// of document key ("" stream: NULL).
func (e *env) deadLetterAt(key string) (string, int64) {
	e.t.Helper()
	var stream string
	var seq int64
	if err := e.pool.QueryRow(e.ctx, `SELECT coalesce(stream, ''), coalesce(stream_seq, 0) FROM cdc.dead_letters WHERE doc_key = $1`, key).Scan(&stream, &seq); err != nil {
		e.t.Fatalf("dead letter of %s: %v", key, err)
	}
	return stream, seq
}

// TestDeadLetterRecordsItsStream: without lanes a dead letter names the
// default stream with its sequence.
func TestDeadLetterRecordsItsStream(t *testing.T) {
	e := newEnv(t)
	e.users(1)
	bad := bson.NewObjectID()
	e.publish(e.ev("users", e.userDoc(bad, "nul\x00byte@example.com"), e.next(), nil))
	r := e.start(e.config("a"))
	defer r.stop(t)
	e.waitCount("the NUL document dead-lettered", 1, `SELECT count(*) FROM cdc.dead_letters WHERE doc_key = $1`, bad.Hex())
	if stream, seq := e.deadLetterAt(bad.Hex()); stream != "CDC" || seq != 2 {
		t.Fatalf("dead letter at %s:%d, want CDC:2", stream, seq)
	}
}

// TestLaneDeadLetterRecordsItsLaneStream: with lanes each lane's stream
// numbers its messages from 1, so two dead letters can carry the same
// sequence; each names its lane's stream.
func TestLaneDeadLetterRecordsItsLaneStream(t *testing.T) {
	e := newEnv(t)
	router := e.useLanes(
		bus.Lane{Name: "users", Collections: []string{"users"}},
		bus.Lane{Name: "points", Collections: []string{"pointTransactions"}})
	good, badUser, badPoint := bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID()
	e.publishLaned(router,
		e.ev("users", e.userDoc(good, "good@example.com"), e.next(), nil),                   // CDC_users 1
		e.ev("users", e.userDoc(badUser, "nul\x00byte@example.com"), e.next(), nil),         // CDC_users 2
		e.ev("pointTransactions", e.pointDoc(bson.NewObjectID(), good, "1"), e.next(), nil), // CDC_points 1
		e.ev("pointTransactions", e.pointDoc(badPoint, good, "NaN"), e.next(), nil),         // CDC_points 2
	)
	e.startLanes("a")
	e.waitCount("both bad events dead-lettered", 2, `SELECT count(*) FROM cdc.dead_letters`)
	e.waitCount("the good point applied", 1, `SELECT count(*) FROM point_transactions`)
	for _, tc := range []struct {
		key, stream string
		seq         int64
	}{
		{badUser.Hex(), e.streams.LaneStream("users"), 2},
		{badPoint.Hex(), e.streams.LaneStream("points"), 2},
	} {
		if stream, seq := e.deadLetterAt(tc.key); stream != tc.stream || seq != tc.seq {
			t.Errorf("dead letter of %s at %s:%d, want %s:%d", tc.key, stream, seq, tc.stream, tc.seq)
		}
	}
}
