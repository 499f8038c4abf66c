package sink_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// env is one Postgres database (migrated), one embedded JetStream with
// the streams declared, and the built-in transforms: what a sink needs,
// without MongoDB (events are published as the tailer would).
type env struct {
	t       *testing.T
	ctx     context.Context
	pool    *pgxpool.Pool
	set     *transform.Set
	nc      *nats.Conn
	js      jetstream.JetStream
	streams bus.StreamsConfig
	ct      uint32
	mu      sync.Mutex
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvMaxPayload(t, 0)
}

// newEnvMaxPayload is newEnv on a bus whose max_payload is maxPayload
// bytes (0: the embedded default).
func newEnvMaxPayload(t *testing.T, maxPayload int32) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	pool, set := migratedDB(t, ctx)
	nc, js := bustest.StartMaxPayload(t, maxPayload)
	e := &env{t: t, ctx: ctx, pool: pool, set: set, nc: nc, js: js, ct: uint32(time.Now().Unix()),
		streams: bus.StreamsConfig{Stream: "CDC", SubjectPrefix: "cdc", DLQStream: "CDC_DLQ", Replicas: 1,
			DedupWindow: 2 * time.Minute, MaxAge: 24 * time.Hour, MaxBytes: -1, CheckpointBucket: "cdc_checkpoints"}}
	e.declare()
	return e
}

func (e *env) declare() {
	if err := bus.Ensure(e.ctx, e.js, e.streams); err != nil {
		e.t.Fatal(err)
	}
}

// next is a fresh cluster time, in order.
func (e *env) next() event.ClusterTime {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ct++
	return event.ClusterTime{T: e.ct, I: 1}
}

func dec(t *testing.T, s string) bson.Decimal128 {
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (e *env) userDoc(id bson.ObjectID, email string) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "email", Value: email}, {Key: "username", Value: "u" + id.Hex()},
		{Key: "role", Value: "user"}, {Key: "points", Value: bson.D{{Key: "available", Value: dec(e.t, "0")}, {Key: "used", Value: int32(0)}, {Key: "total", Value: dec(e.t, "0")}}},
		{Key: "createdAt", Value: bson.NewDateTimeFromTime(time.Unix(1.7e9, 0))}, {Key: "updatedAt", Value: bson.NewDateTimeFromTime(time.Unix(1.7e9, 0))}}
}

func (e *env) pointDoc(id, user bson.ObjectID, amount string) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "userId", Value: user}, {Key: "type", Value: "earned"},
		{Key: "amount", Value: dec(e.t, amount)}, {Key: "balance", Value: dec(e.t, amount)},
		{Key: "createdAt", Value: bson.NewDateTimeFromTime(time.Unix(1.7e9, 0))}}
}

// ev builds an insert event of doc in coll at ct (txn may be nil).
func (e *env) ev(coll string, doc bson.D, ct event.ClusterTime, txn *event.Txn) *event.Event {
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

func (e *env) publish(evs ...*event.Event) {
	e.t.Helper()
	for _, ev := range evs {
		msg, _, err := bus.EventMsg(e.streams, ev, e.nc.MaxPayload())
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.js.PublishMsg(e.ctx, msg); err != nil {
			e.t.Fatal(err)
		}
	}
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	logs   *observer.ObservedLogs
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("sink stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sink did not stop within 30s")
	}
}

// ended waits for the sink to stop on its own and returns why.
func (r *running) ended(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("the sink kept running %s", what)
		return nil
	}
}

func (e *env) config(owner string) sink.Config {
	return sink.Config{Consumer: "cdc-sink", BatchSize: 500, BatchWait: 20 * time.Millisecond, AckWait: time.Minute,
		Streams: e.streams, Owner: owner, StandbyPoll: 100 * time.Millisecond}
}

func (e *env) start(cfg sink.Config) *running {
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(zapCoreTee(core, zaptest.NewLogger(e.t, zaptest.Level(zap.WarnLevel)).Core()))
	ctx, cancel := context.WithCancel(e.ctx)
	r := &running{cancel: cancel, done: make(chan error, 1), logs: logs}
	s := sink.New(e.js, e.pool, e.set, cfg, log, nil, nil)
	go func() { r.done <- s.Run(ctx) }()
	return r
}

// waitFor polls cond until it holds or the deadline passes.
func (e *env) waitFor(what string, within time.Duration, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("%s: not within %s (last: %s)", what, within, last)
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (e *env) waitCount(what string, want int, sql string, args ...any) {
	e.t.Helper()
	e.waitFor(what, time.Minute, func() (bool, string) {
		n := e.count(sql, args...)
		return n == want, fmt.Sprintf("%d, want %d", n, want)
	})
}

func (e *env) position() state.Position {
	e.t.Helper()
	p, _, err := state.ReadPosition(e.ctx, e.pool, "cdc-sink")
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) users(n int) []bson.ObjectID {
	ids := make([]bson.ObjectID, n)
	for i := range ids {
		ids[i] = bson.NewObjectID()
		e.publish(e.ev("users", e.userDoc(ids[i], fmt.Sprintf("%s@example.com", ids[i].Hex())), e.next(), nil))
	}
	return ids
}

// A change waiting for its parent (policy wait) survives a restart: it is
// set aside in Postgres with the position that passes it, and applies when
// the parent comes (issue row 1).
func TestWaitingEventSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	user := bson.NewObjectID()
	pt := bson.NewObjectID()
	e.publish(e.ev("pointTransactions", e.pointDoc(pt, user, "5"), e.next(), nil))
	r := e.start(e.config("a"))
	e.waitCount("the point transaction set aside", 1, `SELECT count(*) FROM cdc.deferred_events WHERE kind = 'wait'`)
	e.waitFor("the position past it", 30*time.Second, func() (bool, string) {
		p := e.position()
		return p.Seq == 1, fmt.Sprintf("position %d", p.Seq)
	})
	r.stop(t)
	e.publish(e.ev("users", e.userDoc(user, "parent@example.com"), e.next(), nil))
	r = e.start(e.config("b"))
	defer r.stop(t)
	e.waitCount("the point transaction applied after the restart", 1, `SELECT count(*) FROM point_transactions`)
	e.waitCount("nothing left deferred", 0, `SELECT count(*) FROM cdc.deferred_events`)
	if n := e.count(`SELECT count(*) FROM cdc.dead_letters`); n != 0 {
		t.Fatalf("%d dead letters, want none", n)
	}
}

// A stream re-created under the sink (sequences restart at 1) stops it
// loudly naming the recovery; the recovery (replay what is missing, then
// adopt the new stream) ends exact (issue row 2).
func TestRecreatedStreamStopsLoudlyAndAdoptRecovers(t *testing.T) {
	e := newEnv(t)
	e.users(5)
	r := e.start(e.config("a"))
	e.waitCount("5 users", 5, `SELECT count(*) FROM users`)
	r.stop(t)
	if err := e.js.DeleteStream(e.ctx, e.streams.Stream); err != nil {
		t.Fatal(err)
	}
	e.declare()
	later := e.users(3) // sequences 1..3 of the new stream
	_ = later
	r = e.start(e.config("a"))
	err := r.ended(t, "on a re-created stream")
	var sc *sink.StreamChangedError
	if !errors.As(err, &sc) || !strings.Contains(err.Error(), "cdc position adopt") {
		t.Fatalf("sink ended with %v, want a StreamChangedError naming `cdc position adopt`", err)
	}
	if n := e.count(`SELECT count(*) FROM users`); n != 5 {
		t.Fatalf("%d users after the refusal, want 5 (nothing applied from the new stream)", n)
	}
	if _, _, err := sink.Reposition(e.ctx, e.pool, e.js, "cdc-sink", e.streams.Stream, "operator", nil); err != nil {
		t.Fatal(err)
	}
	r = e.start(e.config("a"))
	defer r.stop(t)
	e.waitCount("all 8 users after adopting the stream", 8, `SELECT count(*) FROM users`)
}

// Two sinks on one consumer: one applies, the other stands by and says who
// holds the fence; when the holder goes, the standby takes over; nothing
// is applied twice and the position never goes backwards (issue row 3).
func TestSecondSinkStandsByAndTakesOver(t *testing.T) {
	e := newEnv(t)
	a := e.start(e.config("instance-a"))
	e.waitFor("a takes the consumer", 30*time.Second, func() (bool, string) {
		p := e.position()
		return p.Owner == "instance-a", "owner " + p.Owner
	})
	b := e.start(e.config("instance-b"))
	e.waitFor("b says it stands by, naming a", 30*time.Second, func() (bool, string) {
		n := b.logs.FilterMessageSnippet("standing by").FilterField(zap.String("holder", "instance-a")).Len()
		return n > 0, fmt.Sprintf("%d standby lines", n)
	})
	e.users(50)
	e.waitCount("50 users", 50, `SELECT count(*) FROM users`)
	if p := e.position(); p.Owner != "instance-a" {
		t.Fatalf("owner %s, want instance-a", p.Owner)
	}
	a.stop(t)
	e.users(50)
	e.waitCount("100 users after b took over", 100, `SELECT count(*) FROM users`)
	if p := e.position(); p.Owner != "instance-b" || p.Seq != 100 {
		t.Fatalf("position %+v, want owner instance-b at 100", p)
	}
	b.stop(t)
}

// A zombie's commit fails inside its own transaction: its epoch is
// checked FOR UPDATE there.
func TestFenceRefusesSupersededEpoch(t *testing.T) {
	e := newEnv(t)
	connect := func(ctx context.Context) (*pgxConn, error) { return connectPG(ctx, e.pool) }
	f1, _, err := state.AcquireFence(e.ctx, connect, "c", "CDC", "one", 0)
	if err != nil {
		t.Fatal(err)
	}
	f1.Release(e.ctx) // its session ends: the lock is free, the epoch stays
	f2, _, err := state.AcquireFence(e.ctx, connect, "c", "CDC", "two", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Release(e.ctx)
	if _, _, err := state.AcquireFence(e.ctx, connect, "c", "CDC", "three", 0); !errors.Is(err, state.ErrHeld) {
		t.Fatalf("a third instance got %v, want ErrHeld while two holds it", err)
	}
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(e.ctx) //nolint:errcheck
	if _, err := f1.Check(e.ctx, tx); !errors.Is(err, state.ErrFenced) {
		t.Fatalf("superseded epoch: Check = %v, want ErrFenced", err)
	}
	if err := f1.Advance(e.ctx, tx, 10, event.ClusterTime{}); !errors.Is(err, state.ErrFenced) {
		t.Fatalf("superseded epoch: Advance = %v, want ErrFenced", err)
	}
}

// Messages removed from the stream before the sink applied them stop it
// loudly, at start and while running (issue row 4).
func TestStreamGapStopsLoudly(t *testing.T) {
	t.Run("at start", func(t *testing.T) {
		e := newEnv(t)
		e.users(3)
		r := e.start(e.config("a"))
		e.waitCount("3 users", 3, `SELECT count(*) FROM users`)
		r.stop(t)
		e.users(3)
		s, _ := e.js.Stream(e.ctx, e.streams.Stream)
		if err := s.Purge(e.ctx, jetstream.WithPurgeSequence(6)); err != nil { // removes 4 and 5, unapplied
			t.Fatal(err)
		}
		r = e.start(e.config("a"))
		if err := r.ended(t, "over a gap"); !errors.Is(err, sink.ErrStreamGap) || !strings.Contains(err.Error(), "cdc replay oplog") {
			t.Fatalf("sink ended with %v, want ErrStreamGap naming the replay", err)
		}
	})
	t.Run("while running", func(t *testing.T) {
		e := newEnv(t)
		e.users(3)
		s, _ := e.js.Stream(e.ctx, e.streams.Stream)
		if err := s.DeleteMsg(e.ctx, 2); err != nil {
			t.Fatal(err)
		}
		r := e.start(e.config("a"))
		if err := r.ended(t, "over a deleted message"); !errors.Is(err, sink.ErrStreamGap) {
			t.Fatalf("sink ended with %v, want ErrStreamGap", err)
		}
		if p := e.position(); p.Seq > 1 {
			t.Fatalf("position %d moved past the gap", p.Seq)
		}
	})
}

// A Mongo transaction larger than the consumer's in-flight limit applies
// whole, as one Postgres transaction (issue row 5, acceptance 3).
func TestTransactionOf50000Operations(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 50,000 events")
	}
	e := newEnv(t)
	user := e.users(1)[0]
	const n = 50000
	ct := e.next()
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = e.ev("pointTransactions", e.pointDoc(bson.NewObjectID(), user, "1"), ct,
			&event.Txn{LSID: "0123456789abcdef0123456789abcdef", Number: 7, Index: i, Last: i == n-1})
	}
	e.publishAsync(evs)
	r := e.start(e.config("a"))
	defer r.stop(t)
	e.waitCount("the whole transaction", n, `SELECT count(*) FROM point_transactions`)
	if k := e.count(`SELECT count(DISTINCT xmin::text) FROM point_transactions`); k != 1 {
		t.Fatalf("the transaction's rows were written by %d Postgres transactions, want 1", k)
	}
	e.waitCount("nothing left deferred", 0, `SELECT count(*) FROM cdc.deferred_events`)
}

func (e *env) publishAsync(evs []*event.Event) {
	e.t.Helper()
	for i, ev := range evs {
		msg, _, err := bus.EventMsg(e.streams, ev, e.nc.MaxPayload())
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.js.PublishMsgAsync(msg); err != nil {
			e.t.Fatal(err)
		}
		// Wait for the acks well below nats.go's default of 4,000 pending
		// async publishes: past it a publish stalls, and under -race the
		// acks can take longer than its stall wait (ErrTooManyStalledMsgs).
		if i%1000 == 999 {
			<-e.js.PublishAsyncComplete()
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		e.t.Fatal("async publishes not acknowledged")
	}
}

// A transaction whose last event never comes is dead-lettered whole after
// the timeout, naming what arrived; the position passes it (issue row 8).
func TestIncompleteTransactionDeadLetteredWhole(t *testing.T) {
	e := newEnv(t)
	user := e.users(1)[0]
	ct := e.next()
	for i := 0; i < 3; i++ {
		e.publish(e.ev("pointTransactions", e.pointDoc(bson.NewObjectID(), user, "1"), ct,
			&event.Txn{LSID: "fedcba9876543210fedcba9876543210", Number: 1, Index: i}))
	}
	e.users(1)
	cfg := e.config("a")
	cfg.TxnSpillAfter, cfg.TxnTimeout = 200*time.Millisecond, 2*time.Second
	r := e.start(cfg)
	e.waitCount("the users applied past the open transaction", 2, `SELECT count(*) FROM users`)
	e.waitFor("the position past the open transaction", 30*time.Second, func() (bool, string) {
		p := e.position()
		return p.Seq == 5, fmt.Sprintf("position %d", p.Seq)
	})
	r.stop(t)
	r = e.start(cfg) // a restart keeps the parts it set aside
	defer r.stop(t)
	e.waitCount("the transaction dead-lettered whole", 3, `SELECT count(*) FROM cdc.dead_letters WHERE error_class = 'incomplete'`)
	e.waitCount("nothing left deferred", 0, `SELECT count(*) FROM cdc.deferred_events`)
	if n := e.count(`SELECT count(*) FROM point_transactions`); n != 0 {
		t.Fatalf("%d rows of the incomplete transaction applied", n)
	}
}

// Postgres restored from a backup (the position behind what NATS
// acknowledged): the sink repositions from Postgres and re-applies what
// the backup lacks (issue row 7).
func TestPostgresRestoredFromBackupReapplies(t *testing.T) {
	e := newEnv(t)
	e.users(10)
	r := e.start(e.config("a"))
	e.waitCount("10 users", 10, `SELECT count(*) FROM users`)
	r.stop(t)
	// The "backup" was taken after 4 users: rows, versions, ids and the
	// position as they were then.
	for _, q := range []string{
		`DELETE FROM users WHERE id IN (SELECT new_id FROM id_map WHERE collection = 'users' ORDER BY new_id OFFSET 4)`,
		`DELETE FROM cdc.doc_versions WHERE doc_key NOT IN (SELECT legacy_object_id FROM id_map m JOIN users u ON u.id = m.new_id)`,
		`UPDATE cdc.sink_positions SET stream_seq = 4`,
	} {
		if _, err := e.pool.Exec(e.ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	r = e.start(e.config("a"))
	defer r.stop(t)
	e.waitCount("the 6 users the backup lacked", 10, `SELECT count(*) FROM users`)
}

// A document whose indexed text is too large for a Postgres index is
// dead-lettered with SQLSTATE 54000 and the events after it apply
// (acceptance 4).
func TestIndexRowTooLargeDeadLettered(t *testing.T) {
	e := newEnv(t)
	big := bson.NewObjectID()
	// Random text: a repeated one compresses below the btree limit.
	buf := make([]byte, 4608)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	email := hex.EncodeToString(buf) + "@example.com" // 9 KB
	e.publish(e.ev("users", e.userDoc(big, email), e.next(), nil))
	e.users(2)
	r := e.start(e.config("a"))
	defer r.stop(t)
	e.waitCount("the users after it", 2, `SELECT count(*) FROM users`)
	e.waitCount("the big one dead-lettered with 54000", 1, `SELECT count(*) FROM cdc.dead_letters WHERE error_class = 'poison' AND reason LIKE '%54000%'`)
}

// More events waiting for their parents than the consumer lets be in
// flight (MaxAckPending is at least 20,000) never stall the sink: waiting
// events are set aside and acknowledged, and all apply once the parents
// come (issue row 5).
func TestMoreWaitingEventsThanInFlightLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 25,000 events")
	}
	e := newEnv(t)
	const n = 25000
	users := make([]bson.ObjectID, 50)
	for i := range users {
		users[i] = bson.NewObjectID()
	}
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = e.ev("pointTransactions", e.pointDoc(bson.NewObjectID(), users[i%len(users)], "1"), e.next(), nil)
	}
	e.publishAsync(evs)
	r := e.start(e.config("a"))
	defer r.stop(t)
	e.waitFor("every event set aside and the position past them", 2*time.Minute, func() (bool, string) {
		p := e.position()
		return p.Seq == n, fmt.Sprintf("position %d", p.Seq)
	})
	if k := e.count(`SELECT count(*) FROM cdc.deferred_events WHERE kind = 'wait'`); k != n {
		t.Fatalf("%d waiting events deferred, want %d", k, n)
	}
	var parents []*event.Event
	for _, u := range users {
		parents = append(parents, e.ev("users", e.userDoc(u, u.Hex()+"@example.com"), e.next(), nil))
	}
	e.publishAsync(parents)
	e.waitFor("every waiting event applied", 3*time.Minute, func() (bool, string) {
		k := e.count(`SELECT count(*) FROM point_transactions`)
		return k == n, fmt.Sprintf("%d of %d", k, n)
	})
	e.waitCount("nothing left deferred", 0, `SELECT count(*) FROM cdc.deferred_events`)
}

// fillStream publishes users until the size-limited stream refuses one
// (discard policy new) and returns their ids.
func (e *env) fillStream() []bson.ObjectID {
	e.t.Helper()
	var ids []bson.ObjectID
	for len(ids) < 100000 {
		id := bson.NewObjectID()
		msg, _, err := bus.EventMsg(e.streams, e.ev("users", e.userDoc(id, id.Hex()+"@example.com"), e.next(), nil), e.nc.MaxPayload())
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.js.PublishMsg(e.ctx, msg); err != nil {
			if errors.Is(bus.ClassifyPublishError(e.ctx, e.js, e.streams.Stream, msg, err), bus.ErrStreamFull) {
				return ids
			}
			e.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	e.t.Fatal("the stream never filled")
	return nil
}

// A full size-limited stream (discard policy new) is freed by the sink:
// it purges only messages at or below its applied position and below every
// other consumer's ack floor, and new events are accepted and applied
// again (issue row 4: a full stream never discards what is unapplied, and
// never stays full once the sink caught up).
func TestFullStreamTrimmedBelowTheAppliedPosition(t *testing.T) {
	e := newEnv(t)
	e.streams.MaxBytes = 64 << 10
	e.declare()
	s, err := e.js.Stream(e.ctx, e.streams.Stream)
	if err != nil {
		t.Fatal(err)
	}
	// Another reader of the stream (a replay, a second consumer) that has
	// acknowledged only the first 5 messages.
	other, err := s.CreateConsumer(e.ctx, jetstream.ConsumerConfig{Durable: "reader", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	first := e.fillStream()
	batch, err := other.Fetch(5)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	cfg := e.config("a")
	cfg.TrimEvery = 50 * time.Millisecond
	r := e.start(cfg)
	defer r.stop(t)
	e.waitCount("the first fill applied", len(first), `SELECT count(*) FROM users`)
	streamFirst := func() uint64 {
		info, err := s.Info(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.FirstSeq
	}
	e.waitFor("trimmed up to the other consumer's ack floor", 30*time.Second, func() (bool, string) {
		f := streamFirst()
		return f == 6, fmt.Sprintf("first sequence %d", f)
	})
	if err := s.DeleteConsumer(e.ctx, "reader"); err != nil {
		t.Fatal(err)
	}
	e.waitFor("trimmed to about half the limit", 30*time.Second, func() (bool, string) {
		info, err := s.Info(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Bytes <= uint64(e.streams.MaxBytes)*6/10, fmt.Sprintf("%d bytes, first sequence %d", info.State.Bytes, info.State.FirstSeq)
	})
	if f, p := streamFirst(), e.position().Seq; f > p+1 {
		t.Fatalf("trimmed past the applied position: first sequence %d, position %d", f, p)
	}
	second := e.users(len(first) / 3) // fits in the freed half; a refusal fails the test
	e.waitCount("both fills applied", len(first)+len(second), `SELECT count(*) FROM users`)
	e.waitFor("position at the last event", 30*time.Second, func() (bool, string) {
		info, err := s.Info(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		p := e.position().Seq
		return p == info.State.LastSeq, fmt.Sprintf("position %d, last %d", p, info.State.LastSeq)
	})
}

// A document holding a NUL character (BSON strings may; Postgres text
// and jsonb may not) is dead-lettered with its whole event, and the events
// after it apply: the dead letter's stored envelope must not need
// Postgres to accept the NUL.
func TestNULDocumentDeadLettered(t *testing.T) {
	e := newEnv(t)
	bad := bson.NewObjectID()
	e.publish(e.ev("users", e.userDoc(bad, "nul\x00byte@example.com"), e.next(), nil))
	e.users(2)
	r := e.start(e.config("a"))
	defer r.stop(t)
	e.waitCount("the users after it", 2, `SELECT count(*) FROM users`)
	e.waitCount("the NUL document dead-lettered", 1, `SELECT count(*) FROM cdc.dead_letters WHERE doc_key = $1`, bad.Hex())
}
