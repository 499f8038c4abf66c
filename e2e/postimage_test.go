package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/sink"
)

// TestPostImageTransactions (issue 10, acceptance 4): a transaction X on
// widgets A and B and a later Y on the same documents, both written while
// the replicator is down, are applied in post_image mode (the default)
// such that the Postgres state after X's batch shows X's values, never
// Y's. With update_lookup X's events would carry the documents as they are
// when read, i.e. Y's values. The collections have
// changeStreamPreAndPostImages from newBaseEnv (createCollection option,
// as a user would).
func TestPostImageTransactions(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	l := newLoad(e, 7)
	a, b := bson.NewObjectID(), bson.NewObjectID()
	coll := e.client.Database(e.dbName).Collection("widgets")
	_, err := coll.InsertMany(e.ctx, []any{l.doc("widgets", a, 1), l.doc("widgets", b, 1)})
	must(t, err)
	stop := e.runApp(cfg, app.Options{})
	e.waitExact(60 * time.Second)
	must(t, stop())

	txn := func(v, qty int64) {
		e.inTxn(func(sc context.Context) error {
			for _, id := range []bson.ObjectID{a, b} {
				if _, err := coll.UpdateByID(sc, id, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: v}, {Key: "qty", Value: qty}}}}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	txn(2, 200) // X
	txn(3, 300) // Y

	var mu sync.Mutex
	var states []string
	hooks := &sink.Hooks{AfterCommit: func(ctx context.Context) error {
		var s []string
		for _, id := range []bson.ObjectID{a, b} {
			var v, qty int64
			err := e.pool.QueryRow(ctx, `SELECT w.v, w.qty FROM widgets w JOIN id_map m ON m.new_id = w.id AND m.collection = 'widgets'
				WHERE m.legacy_object_id = $1`, id.Hex()).Scan(&v, &qty)
			if err != nil {
				return fmt.Errorf("read row %s: %w", id.Hex(), err)
			}
			s = append(s, fmt.Sprintf("v=%d qty=%d", v, qty))
		}
		mu.Lock()
		states = append(states, strings.Join(s, ", "))
		mu.Unlock()
		return nil
	}}
	cfg.Sink.BatchSize = 2 // X's two events are one batch, Y's the next
	stop = e.runApp(cfg, app.Options{SinkHooks: hooks})
	e.waitExact(60 * time.Second)
	must(t, stop())
	mu.Lock()
	defer mu.Unlock()
	const afterX = "v=2 qty=200, v=2 qty=200"
	seen := false
	for _, s := range states {
		if s == afterX {
			seen = true
		}
		// X's position with Y's values: v=2 rows never show qty 300, and
		// a state mixing the transactions never exists.
		before := strings.HasPrefix(s, "v=1 ") && strings.Contains(s, ", v=1 ")
		if s != afterX && s != "v=3 qty=300, v=3 qty=300" && !before {
			t.Errorf("Postgres showed a state that is neither X nor Y: %s", s)
		}
	}
	if !seen {
		t.Fatalf("no commit showed X's values (%s); states after each commit: %q", afterX, states)
	}
}
