package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/fault"
	"github.com/amanat/cdc/pkg/sink"
)

// laneInstance is one sink instance (a LaneRunner) with its own Postgres
// pool, named by application_name so the test can cut its sessions.
type laneInstance struct {
	name    string
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	runner  *sink.LaneRunner
	mu      sync.Mutex
	current []string
}

func (li *laneInstance) lanes() []string {
	li.mu.Lock()
	defer li.mu.Unlock()
	return append([]string(nil), li.current...)
}

func (e *env) startLanes(name string) *laneInstance {
	e.t.Helper()
	pcfg, err := pgxpool.ParseConfig(e.pool.Config().ConnString())
	if err != nil {
		e.t.Fatal(err)
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "lane-" + name
	pool, err := pgxpool.NewWithConfig(e.ctx, pcfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(pool.Close)
	cfg := e.config(name)
	log := zaptest.NewLogger(e.t, zaptest.Level(zap.WarnLevel)).With(zap.String("instance", name))
	r := sink.NewLaneRunner(e.js, pool, e.set, cfg, log, nil, nil)
	r.Heartbeat = 200 * time.Millisecond
	li := &laneInstance{name: name, done: make(chan struct{}), runner: r}
	sink.OnAssigned(r, func(l []string) { li.mu.Lock(); li.current = l; li.mu.Unlock() })
	ctx, cancel := context.WithCancel(e.ctx)
	li.cancel = cancel
	go func() { defer close(li.done); li.err = r.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-li.done }) // before the env's services close
	return li
}

// kill ends li as kill -9 would: its Postgres sessions (the fences'
// advisory locks with them) are terminated, then it stops without
// leaving the members bucket (its key expires).
func (e *env) kill(li *laneInstance) {
	e.t.Helper()
	sink.LeaveLikeAKill(li.runner)
	if _, err := e.pool.Exec(e.ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, "lane-"+li.name); err != nil {
		e.t.Fatal(err)
	}
	li.cancel()
	select {
	case <-li.done:
	case <-time.After(30 * time.Second):
		e.t.Fatalf("instance %s did not stop", li.name)
	}
}

// useLanes replaces the env's single stream by lanes (their subjects
// overlap the default stream's, which is deleted) and declares them.
func (e *env) useLanes(lanes ...bus.Lane) *bus.LaneRouter {
	e.t.Helper()
	if err := e.js.DeleteStream(e.ctx, e.streams.Stream); err != nil {
		e.t.Fatal(err)
	}
	e.streams = e.streams.WithLanes(lanes)
	e.declare()
	return bus.NewLaneRouter(e.streams)
}

func (e *env) publishLaned(r *bus.LaneRouter, evs ...*event.Event) {
	e.t.Helper()
	for _, ev := range evs {
		lane, err := r.Route(ev)
		if err != nil {
			e.t.Fatal(err)
		}
		msg, _, err := bus.LaneEventMsg(e.streams, lane, ev, e.nc.MaxPayload())
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.js.PublishMsg(e.ctx, msg, jetstream.WithExpectStream(e.streams.LaneStream(lane))); err != nil {
			e.t.Fatal(err)
		}
	}
}

// TestLanesRebalanceAndKill: two lanes over three instances; one instance
// is killed during load and its lanes move; the final state is exact, a
// document updated many times keeps its last version, and a transaction
// spanning both lanes' collections applies whole.
func TestLanesRebalanceAndKill(t *testing.T) {
	e := newEnv(t)
	router := e.useLanes(
		bus.Lane{Name: "users", Collections: []string{"users"}},
		bus.Lane{Name: "points", Collections: []string{"pointTransactions"}})

	a, b, c := e.startLanes("a"), e.startLanes("b"), e.startLanes("c")
	all := []*laneInstance{a, b, c}
	e.waitFor("both lanes assigned once", 20*time.Second, func() (bool, string) {
		n := 0
		for _, li := range all {
			n += len(li.lanes())
		}
		return n == 2, fmt.Sprintf("%d lanes assigned", n)
	})

	const users, updates = 50, 2000
	ids := make([]bson.ObjectID, users)
	for i := range ids {
		ids[i] = bson.NewObjectID()
		e.publishLaned(router, e.ev("users", e.userDoc(ids[i], fmt.Sprintf("%s@example.com", ids[i].Hex())), e.next(), nil))
		e.publishLaned(router, e.ev("pointTransactions", e.pointDoc(bson.NewObjectID(), ids[i], "1"), e.next(), nil))
	}
	hot := ids[0]
	var victim *laneInstance
	for i := 0; i < updates; i++ {
		e.publishLaned(router, e.ev("users", e.userDoc(hot, fmt.Sprintf("v%d@example.com", i)), e.next(), nil))
		if i == updates/2 {
			for _, li := range all {
				if len(li.lanes()) > 0 {
					victim = li
					break
				}
			}
			e.kill(victim)
		}
	}
	// A transaction over both lanes' collections: all of it goes to the
	// lane of its first event (users).
	txUser, txPoint := bson.NewObjectID(), bson.NewObjectID()
	ct := e.next()
	e.publishLaned(router,
		e.ev("users", e.userDoc(txUser, "txn@example.com"), ct, &event.Txn{LSID: "ab", Number: 1, Index: 0}),
		e.ev("pointTransactions", e.pointDoc(txPoint, txUser, "7"), ct, &event.Txn{LSID: "ab", Number: 1, Index: 1, Last: true}))

	e.waitFor("the victim's lanes taken by the survivors", 30*time.Second, func() (bool, string) {
		n := 0
		for _, li := range all {
			if li != victim {
				n += len(li.lanes())
			}
		}
		return n == 2, fmt.Sprintf("%d lanes on survivors", n)
	})
	e.waitCount("every user", users+1, `SELECT count(*) FROM users`)
	e.waitCount("every point transaction", users+1, `SELECT count(*) FROM point_transactions`)
	e.waitCount("the hot document's last version", 1, `SELECT count(*) FROM users WHERE email = $1`, fmt.Sprintf("v%d@example.com", updates-1))
	if n := e.count(`SELECT count(*) FROM cdc.dead_letters`); n != 0 {
		t.Fatalf("%d dead letters, want none", n)
	}
	e.waitCount("nothing left deferred", 0, `SELECT count(*) FROM cdc.deferred_events`)
	for _, li := range all {
		if li == victim {
			continue
		}
		li.cancel()
		<-li.done
		if li.err != nil {
			t.Fatalf("instance %s: %v", li.name, li.err)
		}
	}
	// Each lane has its own position row, at its stream's last sequence.
	for _, lane := range []string{"users", "points"} {
		st, err := e.js.Stream(e.ctx, e.streams.LaneStream(lane))
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.count(`SELECT stream_seq FROM cdc.sink_positions WHERE consumer = $1`, sink.LaneConsumer("cdc-sink", lane)); uint64(got) != info.State.LastSeq {
			t.Fatalf("lane %s position %d, stream last %d", lane, got, info.State.LastSeq)
		}
	}
}

// TestLaneRunnerStopsOnLayoutChange: a sink instance running with one
// sink.lanes stops with *bus.LaneLayoutError once another process has
// declared a different layout over the (drained) streams; it never goes
// on applying lanes the tailer no longer feeds.
func TestLaneRunnerStopsOnLayoutChange(t *testing.T) {
	e := newEnv(t)
	e.useLanes(
		bus.Lane{Name: "users", Collections: []string{"users"}},
		bus.Lane{Name: "points", Collections: []string{"pointTransactions"}})
	old := e.streams
	a := e.startLanes("a")
	e.waitFor("both lanes held", 20*time.Second, func() (bool, string) {
		return len(a.lanes()) == 2, fmt.Sprintf("lanes %q", a.lanes())
	})
	// Another process, with users split by document id, declares its
	// lanes: the streams are empty, so the change is allowed.
	next := old.WithLanes([]bus.Lane{
		{Name: "users_0", Collections: []string{"users"}, Group: "users", Part: 0, Parts: 2},
		{Name: "users_1", Collections: []string{"users"}, Group: "users", Part: 1, Parts: 2},
		{Name: "points", Collections: []string{"pointTransactions"}},
	})
	if err := bus.Ensure(e.ctx, e.js, next); err != nil {
		t.Fatalf("declare the new layout over drained streams: %v", err)
	}
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the instance with the old layout kept running")
	}
	var le *bus.LaneLayoutError
	if !errors.As(a.err, &le) || le.Want != old.Layout() || le.Have != next.Layout() {
		t.Fatalf("runner stopped with %v, want a *bus.LaneLayoutError from %q to %q", a.err, old.Layout(), next.Layout())
	}
	if sink.Classify(a.err) != fault.Fatal {
		t.Fatalf("Classify(%v) = %v, want fatal", a.err, sink.Classify(a.err))
	}
}
