package e2e

import (
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/bus"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestTwentyMegabyteChangeEvent (issue 10, acceptance 3): an update of a
// 10 MB document with pre- and post-images is a change event of about
// 30 MB, over MongoDB's 16 MB limit and far over the bus's max_payload
// (1 MiB here, nats-server's default). The tailer reads it in fragments
// ($changeStreamSplitLargeEvent; MongoDB 7.0 or 6.0.9+), reassembles it,
// publishes it through the large-object store, and the sink applies it
// exactly; the change after it still arrives and nothing is dead-lettered.
func TestTwentyMegabyteChangeEvent(t *testing.T) {
	e := newMoneyEnv(t)
	n := e.startNATSMaxPayload(1 << 20)
	cfg := e.config(n.url(), e.dir)
	cfg.Transforms.Dir = ""
	cfg.Tailer.StartAt = e.startAt()
	cfg.Tailer.PreImages = true
	e.runApp(cfg, app.Options{})

	pts := bson.D{{Key: "available", Value: 0}, {Key: "used", Value: 0}, {Key: "total", Value: 0}}
	big, after := bson.NewObjectID(), bson.NewObjectID()
	e.mcInsert("users", bson.D{{Key: "_id", Value: big}, {Key: "email", Value: "big@example.com"},
		{Key: "avatarUrl", Value: strings.Repeat("a", 10<<20)}, {Key: "points", Value: pts}})
	e.mcUpdate("users", big.Hex(), bson.D{{Key: "$set", Value: bson.D{{Key: "avatarUrl", Value: strings.Repeat("b", 10<<20)}}}})
	e.mcInsert("users", bson.D{{Key: "_id", Value: after}, {Key: "email", Value: "after@example.com"}, {Key: "points", Value: pts}})
	e.mcExpectRow("users", "users", after.Hex(), map[string]string{"email": "after@example.com"})
	e.mcEventually("the 10 MB avatar_url of the update applied", func() string {
		n := e.mcCount(`SELECT count(*) FROM users u JOIN id_map m ON m.new_id = u.id
			WHERE m.collection = 'users' AND m.legacy_object_id = $1 AND u.avatar_url = repeat('b', 10485760)`, big.Hex())
		if n != 1 {
			return "users row of the large document does not hold the updated 10 MB avatar_url"
		}
		return ""
	})
	// It went through the object store (one object per large event: the
	// 10 MB insert and the 30 MB update).
	os, err := e.js().ObjectStore(e.ctx, bus.StreamsFromConfig(&cfg).LargeBucket())
	must(t, err)
	objs, err := os.List(e.ctx)
	must(t, err)
	var biggest uint64
	for _, o := range objs {
		biggest = max(biggest, o.Size)
	}
	if len(objs) != 2 || biggest < 30<<20 {
		t.Fatalf("%d large objects, the largest %d bytes; want the insert's and the ~30 MB update's", len(objs), biggest)
	}
	if n := e.mcCount(`SELECT count(*) FROM cdc.dead_letters`); n != 0 {
		t.Fatalf("%d dead letters: %s", n, e.mcDeadLetterSummary())
	}
}
