package replay_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/replay"
	"github.com/amanat/cdc/pkg/report"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

// streamEnv is what `cdc replay stream` reads and writes, without MongoDB
// or a running sink: a migrated Postgres database, an embedded JetStream
// with the change streams declared (one per lane with lanes), and the
// built-in transforms. Events are published as the tailer would
// (bus.LaneRouter, bus.LaneEventMsg).
type streamEnv struct {
	t       *testing.T
	ctx     context.Context
	pool    *pgxpool.Pool
	set     *transform.Set
	nc      *nats.Conn
	js      jetstream.JetStream
	streams bus.StreamsConfig
	router  *bus.LaneRouter
	log     *zap.Logger
	ct      uint32
}

// splitLanes are sink.lanes "points/2:pointTransactions,users:users": the
// point transactions (children of users under policy wait) split over two
// lanes by document id, listed before their parents' lane, so a replay of
// every lane reads children before their parents.
var splitLanes = []bus.Lane{
	{Name: "points_0", Collections: []string{"pointTransactions"}, Group: "points", Part: 0, Parts: 2},
	{Name: "points_1", Collections: []string{"pointTransactions"}, Group: "points", Part: 1, Parts: 2},
	{Name: "users", Collections: []string{"users"}},
}

// migratedTarget is a fresh migrated Postgres database and the built-in
// transforms.
func migratedTarget(ctx context.Context, t *testing.T) (*pgxpool.Pool, *transform.Set) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	if _, err := migrate.Up(ctx, url, nil); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	set, err := transform.Load(transforms.Builtin, ".")
	if err != nil {
		t.Fatal(err)
	}
	return pool, set
}

func newStreamEnv(t *testing.T, lanes []bus.Lane) *streamEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	pool, set := migratedTarget(ctx, t)
	nc, js := bustest.Start(t)
	streams := bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
		DedupWindow: 2 * time.Minute, MaxAge: 24 * time.Hour, MaxBytes: -1, CheckpointBucket: "cdc_checkpoints"}.WithLanes(lanes)
	if err := bus.Ensure(ctx, js, streams); err != nil {
		t.Fatal(err)
	}
	return &streamEnv{t: t, ctx: ctx, pool: pool, set: set, nc: nc, js: js, streams: streams, router: bus.NewLaneRouter(streams),
		log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), ct: uint32(time.Now().Unix())}
}

func (e *streamEnv) next() event.ClusterTime {
	e.ct++
	return event.ClusterTime{T: e.ct, I: 1}
}

func (e *streamEnv) dec(s string) bson.Decimal128 {
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *streamEnv) user(id bson.ObjectID, email string) bson.D {
	at := bson.NewDateTimeFromTime(time.Unix(1.7e9, 0))
	return bson.D{{Key: "_id", Value: id}, {Key: "email", Value: email}, {Key: "username", Value: "u" + id.Hex()},
		{Key: "role", Value: "user"}, {Key: "points", Value: bson.D{{Key: "available", Value: e.dec("0")}, {Key: "used", Value: int32(0)}, {Key: "total", Value: e.dec("0")}}},
		{Key: "createdAt", Value: at}, {Key: "updatedAt", Value: at}}
}

func (e *streamEnv) point(id, user bson.ObjectID, amount string) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "userId", Value: user}, {Key: "type", Value: "earned"},
		{Key: "amount", Value: e.dec(amount)}, {Key: "balance", Value: e.dec(amount)},
		{Key: "createdAt", Value: bson.NewDateTimeFromTime(time.Unix(1.7e9, 0))}}
}

// ev is an insert of doc into coll at ct (txn may be nil).
func (e *streamEnv) ev(coll string, doc bson.D, ct event.ClusterTime, txn *event.Txn) *event.Event {
	raw, err := bson.Marshal(doc)
	if err != nil {
		e.t.Fatal(err)
	}
	key, _ := bson.Marshal(bson.D{{Key: "_id", Value: doc[0].Value}})
	id := fmt.Sprintf("%d.%d:%s", ct.T, ct.I, doc[0].Value.(bson.ObjectID).Hex())
	if txn != nil {
		id += fmt.Sprintf(":%d", txn.Index)
	}
	return &event.Event{V: 1, ID: id, Op: event.OpInsert,
		Source: event.Source{DB: "escrow", Coll: coll, ClusterTime: ct, Txn: txn}, Key: key, Doc: raw}
}

// publish publishes evs in order, each to its lane's stream, and returns
// their lanes.
func (e *streamEnv) publish(evs ...*event.Event) []string {
	e.t.Helper()
	var lanes []string
	for _, ev := range evs {
		lane, err := e.router.Route(ev)
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
		lanes = append(lanes, lane)
	}
	return lanes
}

// seed publishes users (to lane users) and one point transaction of each
// (to points_0 or points_1 by its id, more until both parts hold some),
// and returns how many of each.
func (e *streamEnv) seed(users int) (nUsers, nPoints int) {
	e.t.Helper()
	parts := map[string]bool{}
	for i := 0; i < users || len(parts) < 2; i++ {
		u := bson.NewObjectID()
		e.publish(e.ev("users", e.user(u, u.Hex()+"@example.com"), e.next(), nil))
		l := e.publish(e.ev("pointTransactions", e.point(bson.NewObjectID(), u, "1"), e.next(), nil))
		parts[l[0]] = true
		nUsers, nPoints = nUsers+1, nPoints+1
		if i > 1000 {
			e.t.Fatalf("1000 point transactions all in %v", parts)
		}
	}
	return nUsers, nPoints
}

func (e *streamEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *streamEnv) replay(cfg replay.StreamConfig) (*report.Report, error) {
	e.t.Helper()
	cfg.Streams, cfg.Database = e.streams, "escrow"
	return replay.Stream(e.ctx, e.js, e.pool, e.set, cfg, e.log)
}

// hasNote reports whether one of rep's notes contains every one of parts.
func hasNote(rep *report.Report, parts ...string) bool {
	for _, n := range rep.Notes {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(n, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestReplayStreamLanesSince: with lanes, --since replays every lane's
// stream as one replay. The point transactions' lanes are read before
// their parents' (users), so they wait; they apply in the retry that runs
// once every lane was read. A transaction over both lanes' collections
// (in the users lane, its first event's) applies whole. The result is
// exact, and a second run changes nothing.
func TestReplayStreamLanesSince(t *testing.T) {
	e := newStreamEnv(t, splitLanes)
	since := time.Now().Add(-time.Second)
	users, points := e.seed(20)
	txUser, txPoint := bson.NewObjectID(), bson.NewObjectID()
	ct := e.next()
	if l := e.publish(
		e.ev("users", e.user(txUser, "txn@example.com"), ct, &event.Txn{LSID: "ab", Number: 1, Index: 0}),
		e.ev("pointTransactions", e.point(txPoint, txUser, "7"), ct, &event.Txn{LSID: "ab", Number: 1, Index: 1, Last: true}),
	); l[0] != "users" || l[1] != "users" {
		t.Fatalf("the transaction went to lanes %v, want both in users", l)
	}
	users, points = users+1, points+1
	total := int64(users + points)

	rep, err := e.replay(replay.StreamConfig{Since: since, BatchSize: 7})
	if err != nil {
		t.Fatalf("replay: %v (notes %v)", err, rep.Notes)
	}
	if rep.Errors != 0 || rep.Read != total || rep.Applied != total || rep.DeadLettered != 0 {
		t.Fatalf("replay: %d errors, %d read, %d applied, %d dead-lettered; want 0, %d, %d, 0: %v",
			rep.Errors, rep.Read, rep.Applied, rep.DeadLettered, total, total, rep.Notes)
	}
	for _, lane := range e.streams.LaneNames() {
		if !hasNote(rep, "range: stream "+e.streams.LaneStream(lane)+" messages stored since") {
			t.Errorf("no range note for lane %s: %v", lane, rep.Notes)
		}
	}
	if n := e.count(`SELECT count(*) FROM users`); n != users {
		t.Fatalf("%d users, want %d", n, users)
	}
	if n := e.count(`SELECT count(*) FROM point_transactions`); n != points {
		t.Fatalf("%d point transactions, want %d", n, points)
	}
	if n := e.count(`SELECT count(*) FROM cdc.dead_letters`); n != 0 {
		t.Fatalf("%d dead letters, want none", n)
	}
	if n := e.count(`SELECT count(*) FROM cdc.sink_positions`); n != 0 {
		t.Fatalf("the replay recorded %d consumer positions", n)
	}

	again, err := e.replay(replay.StreamConfig{Since: since})
	if err != nil {
		t.Fatalf("second replay: %v", err)
	}
	if again.Errors != 0 || again.Applied != 0 || again.Read != total || again.Skipped != total {
		t.Fatalf("second replay: %d errors, %d applied, %d read, %d skipped; want 0, 0, %d, %d: %v",
			again.Errors, again.Applied, again.Read, again.Skipped, total, total, again.Notes)
	}
}

// TestReplayStreamLanesCollections: --since with collections reads the
// lanes whose streams hold those collections' events and skips, saying
// so, those whose streams hold none.
func TestReplayStreamLanesCollections(t *testing.T) {
	e := newStreamEnv(t, splitLanes)
	since := time.Now().Add(-time.Second)
	users, points := e.seed(10)

	rep, err := e.replay(replay.StreamConfig{Since: since, Collections: []string{"users"}})
	if err != nil || rep.Errors != 0 || rep.Applied != int64(users) || rep.Collections["pointTransactions"] != 0 {
		t.Fatalf("users only: %v, %d errors, %d applied (want %d), read %v: %v", err, rep.Errors, rep.Applied, users, rep.Collections, rep.Notes)
	}
	for _, lane := range []string{"points_0", "points_1"} {
		if !hasNote(rep, "stream "+e.streams.LaneStream(lane)+" holds no events of the selected collections") {
			t.Errorf("lane %s not reported skipped: %v", lane, rep.Notes)
		}
	}
	if n := e.count(`SELECT count(*) FROM point_transactions`); n != 0 {
		t.Fatalf("%d point transactions applied by a replay of users", n)
	}

	rep, err = e.replay(replay.StreamConfig{Since: since, Collections: []string{"pointTransactions"}})
	if err != nil || rep.Errors != 0 || rep.Applied != int64(points) || rep.Collections["users"] != 0 {
		t.Fatalf("point transactions only: %v, %d errors, %d applied (want %d), read %v: %v", err, rep.Errors, rep.Applied, points, rep.Collections, rep.Notes)
	}
	if !hasNote(rep, "stream "+e.streams.LaneStream("users")+" holds no events of the selected collections") {
		t.Errorf("lane users not reported skipped: %v", rep.Notes)
	}
	if n := e.count(`SELECT count(*) FROM point_transactions`); n != points {
		t.Fatalf("%d point transactions, want %d", n, points)
	}
}

// TestReplayStreamLanesSequencesNeedALane: with lanes a sequence range
// without --lane is refused before anything is read, naming every lane
// and its stream; so is an unknown lane, and a lane without lanes.
func TestReplayStreamLanesSequencesNeedALane(t *testing.T) {
	e := newStreamEnv(t, splitLanes)
	e.seed(3)
	for _, tc := range []struct {
		name string
		cfg  replay.StreamConfig
	}{
		{"--from-seq", replay.StreamConfig{FromSeq: 1}},
		{"--from-seq and --to-seq", replay.StreamConfig{FromSeq: 1, ToSeq: 2}},
		{"--since and --to-seq", replay.StreamConfig{Since: time.Now().Add(-time.Hour), ToSeq: 2}},
		{"no range", replay.StreamConfig{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := e.replay(tc.cfg)
			var lre *replay.LaneRequiredError
			if !errors.As(err, &lre) || !errors.Is(err, replay.ErrBadRange) {
				t.Fatalf("err = %v, want a *LaneRequiredError (ErrBadRange)", err)
			}
			msg := err.Error()
			for _, want := range []string{"--lane", "--since", "points_0 (stream CDC_points_0)", "points_1 (stream CDC_points_1)", "users (stream CDC_users)"} {
				if !strings.Contains(msg, want) {
					t.Errorf("the refusal does not say %q: %s", want, msg)
				}
			}
			if rep.Read != 0 {
				t.Fatalf("refused, yet %d events read", rep.Read)
			}
		})
	}
	t.Run("unknown lane", func(t *testing.T) {
		_, err := e.replay(replay.StreamConfig{Lane: "ledger", FromSeq: 1})
		var ule *replay.UnknownLaneError
		if !errors.As(err, &ule) || !errors.Is(err, replay.ErrUnknownLane) || ule.Lane != "ledger" {
			t.Fatalf("err = %v, want an *UnknownLaneError for ledger", err)
		}
		if !strings.Contains(err.Error(), "points_0, points_1, users") {
			t.Fatalf("the refusal does not list the lanes: %v", err)
		}
	})
	t.Run("a lane without lanes", func(t *testing.T) {
		_, err := replay.StreamLanes(replay.StreamConfig{Streams: bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc"}, Lane: "users", FromSeq: 1})
		var ule *replay.UnknownLaneError
		if !errors.As(err, &ule) || len(ule.Lanes) != 0 || !strings.Contains(err.Error(), "no sink lanes are configured") {
			t.Fatalf("err = %v, want an *UnknownLaneError saying no lanes are configured", err)
		}
	})
	if n := e.count(`SELECT count(*) FROM users`) + e.count(`SELECT count(*) FROM point_transactions`); n != 0 {
		t.Fatalf("refused replays applied %d rows", n)
	}
}

// TestReplayStreamLaneFromSeq: --lane with --from-seq/--to-seq replays
// that lane's stream only, in its own sequences; a dead letter it records
// names the lane's stream.
func TestReplayStreamLaneFromSeq(t *testing.T) {
	e := newStreamEnv(t, splitLanes)
	users, _ := e.seed(5)
	bad := bson.NewObjectID()
	e.publish(e.ev("users", e.user(bad, "nul\x00byte@example.com"), e.next(), nil)) // CDC_users users+1: Postgres refuses NUL
	users++

	rep, err := e.replay(replay.StreamConfig{Lane: "users", FromSeq: 2, ToSeq: 3})
	if err != nil || rep.Errors != 0 || rep.Read != 2 || rep.Applied != 2 {
		t.Fatalf("users 2..3: %v, %d errors, %d read, %d applied; want 2 and 2: %v", err, rep.Errors, rep.Read, rep.Applied, rep.Notes)
	}
	if !hasNote(rep, "range: stream CDC_users sequences 2..3") || len(rep.Notes) != 1 {
		t.Fatalf("notes %v, want the one range of CDC_users", rep.Notes)
	}

	rep, err = e.replay(replay.StreamConfig{Lane: "users", FromSeq: 1})
	if err != nil {
		t.Fatalf("users from 1: %v", err)
	}
	if rep.Read != int64(users) || rep.Applied != int64(users-3) || rep.Skipped != 2 || rep.DeadLettered != 1 || rep.Errors != 1 {
		t.Fatalf("users from 1: read %d applied %d skipped %d dead-lettered %d errors %d; want %d, %d, 2, 1, 1: %v",
			rep.Read, rep.Applied, rep.Skipped, rep.DeadLettered, rep.Errors, users, users-3, rep.Notes)
	}
	if !hasNote(rep, fmt.Sprintf("stream CDC_users sequences 1..%d: 1 events dead-lettered", users)) {
		t.Errorf("the dead letter's note does not name its stream: %v", rep.Notes)
	}
	if n := e.count(`SELECT count(*) FROM users`); n != users-1 {
		t.Fatalf("%d users, want %d", n, users-1)
	}
	if n := e.count(`SELECT count(*) FROM point_transactions`); n != 0 {
		t.Fatalf("a replay of lane users applied %d point transactions", n)
	}
	var stream string
	var seq int64
	if err := e.pool.QueryRow(e.ctx, `SELECT coalesce(stream, ''), stream_seq FROM cdc.dead_letters WHERE doc_key = $1`, bad.Hex()).Scan(&stream, &seq); err != nil {
		t.Fatal(err)
	}
	if stream != "CDC_users" || seq != int64(users) {
		t.Fatalf("dead letter at %s:%d, want CDC_users:%d", stream, seq, users)
	}
}

// TestReplayStreamWithoutLanes: without lanes the default stream is
// replayed by sequence as before lanes existed, and its dead letters name
// it.
func TestReplayStreamWithoutLanes(t *testing.T) {
	e := newStreamEnv(t, nil)
	ids := make([]bson.ObjectID, 4)
	for i := range ids {
		ids[i] = bson.NewObjectID()
		e.publish(e.ev("users", e.user(ids[i], ids[i].Hex()+"@example.com"), e.next(), nil))
	}
	bad := bson.NewObjectID()
	e.publish(e.ev("users", e.user(bad, "nul\x00byte@example.com"), e.next(), nil))
	rep, err := e.replay(replay.StreamConfig{FromSeq: 1})
	if err != nil || rep.Read != 5 || rep.Applied != 4 || rep.DeadLettered != 1 || rep.Errors != 1 {
		t.Fatalf("replay: %v, read %d applied %d dead-lettered %d errors %d; want 5, 4, 1, 1: %v",
			err, rep.Read, rep.Applied, rep.DeadLettered, rep.Errors, rep.Notes)
	}
	want := []string{"range: stream CDC sequences 1..5", "sequences 1..5: 1 events dead-lettered (cdc dlq list)"}
	if !slices.Equal(rep.Notes, want) {
		t.Fatalf("notes %q, want %q", rep.Notes, want)
	}
	var stream string
	if err := e.pool.QueryRow(e.ctx, `SELECT coalesce(stream, '') FROM cdc.dead_letters WHERE doc_key = $1`, bad.Hex()).Scan(&stream); err != nil {
		t.Fatal(err)
	}
	if stream != "CDC" {
		t.Fatalf("dead letter of stream %q, want CDC", stream)
	}
}
