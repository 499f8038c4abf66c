package verify

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/migrate"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithShared(m, pgtest.Options{}))
}

// The world of the integration tests: the MongoDB wire test server, a
// migrated Postgres database with the tables of one small mapping, and a
// "sink" that is this test writing rows as a sink would (so a test can
// write them as a broken sink would, too).

const accountsYAML = `version: 1
collection: accounts
table: accounts
columns:
  - {column: balance, field: balance, type: "numeric(38,18)", required: true}
  - {column: wei, field: wei, type: "numeric(78,0)"}
  - column: status
    field: status
    type: enum
    enum_type: account_status
    labels: [open, closed]
    values: {frozen: closed}
  - {column: owner_oid, field: ownerId, type: objectid}
  - {column: opened_at, field: openedAt, type: timestamptz}
children:
  - table: account_moves
    parent_column: account_id
    field: moves
    kind: array
    columns:
      - {column: ordinal, field: $index, type: int}
      - {column: amount, field: amount, type: "numeric(38,18)", required: true}
      - {column: at, field: at, type: timestamptz}
`

const accountsSQL = `
CREATE TYPE account_status AS ENUM ('open', 'closed');
CREATE TABLE accounts (id uuid PRIMARY KEY, balance numeric(38,18) NOT NULL, wei numeric(78,0), status account_status,
  owner_oid text, opened_at timestamptz);
CREATE TABLE account_moves (account_id uuid NOT NULL REFERENCES accounts (id), ordinal int NOT NULL,
  amount numeric(38,18) NOT NULL, at timestamptz);
`

type world struct {
	t      *testing.T
	ctx    context.Context
	log    *zap.Logger
	client *mongo.Client
	db     string
	pool   *pgxpool.Pool
	set    *transform.Set
	m      *transform.Mapping
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	w := &world{t: t, ctx: ctx, log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), db: "verify_test"}
	srv := mongotest.Start(t)
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	w.client = client
	url := pgtest.NewDatabase(t)
	if _, err := migrate.Up(ctx, url, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	w.pool = pool
	w.exec(accountsSQL)
	m, err := transform.Parse([]byte(accountsYAML), "accounts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w.m = m
	if w.set, err = transform.NewSet(m); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) exec(sql string, args ...any) {
	w.t.Helper()
	if _, err := w.pool.Exec(w.ctx, sql, args...); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
}

func (w *world) coll() *mongo.Collection { return w.client.Database(w.db).Collection("accounts") }

// insert writes doc to MongoDB and returns it as stored.
func (w *world) insert(doc bson.D) bson.Raw {
	w.t.Helper()
	if _, err := w.coll().InsertOne(w.ctx, doc); err != nil {
		w.t.Fatal(err)
	}
	raw, err := bson.Marshal(doc)
	if err != nil {
		w.t.Fatal(err)
	}
	return raw
}

// now is MongoDB's current cluster time.
func (w *world) now() event.ClusterTime {
	w.t.Helper()
	raw, err := w.client.Database(w.db).RunCommand(w.ctx, bson.D{{Key: "ping", Value: 1}}).Raw()
	if err != nil {
		w.t.Fatal(err)
	}
	ts, i, ok := raw.Lookup("operationTime").TimestampOK()
	if !ok {
		w.t.Fatalf("ping has no operationTime: %s", raw)
	}
	return event.ClusterTime{T: ts, I: i}
}

// apply writes what a sink writes for raw when its transform (rowOf)
// makes row of it: the id_map entry, the row, the child rows and the
// version, in one transaction.
func (w *world) apply(raw bson.Raw, rowOf func(*transform.Mapping, bson.Raw) (*transform.Row, error)) {
	w.t.Helper()
	row, err := rowOf(w.m, raw)
	if err != nil {
		w.t.Fatalf("the test sink's transform refuses %s: %v", raw, err)
	}
	key := event.KeyString(raw.Lookup("_id"))
	ct := w.now()
	err = pgx.BeginFunc(w.ctx, w.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(w.ctx, `INSERT INTO id_map (collection, legacy_object_id, new_id) VALUES ('accounts', $1, gen_random_uuid())
			ON CONFLICT DO NOTHING`, key); err != nil {
			return err
		}
		var id string
		if err := tx.QueryRow(w.ctx, `SELECT new_id::text FROM id_map WHERE collection = 'accounts' AND legacy_object_id = $1`, key).Scan(&id); err != nil {
			return err
		}
		v := row.Values
		if _, err := tx.Exec(w.ctx, `DELETE FROM account_moves WHERE account_id = $1`, id); err != nil {
			return err
		}
		if _, err := tx.Exec(w.ctx, `INSERT INTO accounts (id, balance, wei, status, owner_oid, opened_at)
			VALUES ($1, $2::numeric, $3::numeric, $4::account_status, $5, $6)
			ON CONFLICT (id) DO UPDATE SET balance = EXCLUDED.balance, wei = EXCLUDED.wei, status = EXCLUDED.status,
			  owner_oid = EXCLUDED.owner_oid, opened_at = EXCLUDED.opened_at`, id, v[0], v[1], v[2], v[3], v[4]); err != nil {
			return err
		}
		for _, cr := range row.Children[0].Rows {
			if _, err := tx.Exec(w.ctx, `INSERT INTO account_moves (account_id, ordinal, amount, at) VALUES ($1, $2, $3::numeric, $4)`,
				id, cr.Values[0], cr.Values[1], cr.Values[2]); err != nil {
				return err
			}
		}
		_, err := state.AdvanceVersions(w.ctx, tx, []state.Version{{Doc: state.DocRef{Collection: "accounts", Key: key},
			Position: event.Position{ClusterTime: ct}}})
		return err
	})
	if err != nil {
		w.t.Fatalf("apply %s: %v", key, err)
	}
}

// caughtUp records the sink's position at MongoDB's current cluster time:
// the sink has consumed everything written so far.
func (w *world) caughtUp() {
	w.t.Helper()
	w.exec(`INSERT INTO cdc.sink_positions (consumer, stream, stream_seq, cluster_time) VALUES ('cdc-sink', 'CDC', 1, $1)
		ON CONFLICT (consumer) DO UPDATE SET cluster_time = EXCLUDED.cluster_time`, w.now().Pack())
}

// verify runs a full verify of accounts; broken, when set, replaces the
// transform verify runs (as if the sink's code it shares were broken).
func (w *world) verify(broken func(*transform.Mapping, bson.Raw) (*transform.Row, error)) *Report {
	w.t.Helper()
	v, err := New(w.client, w.pool, w.set, Config{Database: w.db, Collections: []string{"accounts"}, RecheckWait: 5 * time.Second, ChunkSize: 50}, w.log, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	if broken != nil {
		v.plans["accounts"].row = broken
	}
	rep, err := v.Run(w.ctx)
	if err != nil {
		w.t.Fatalf("verify did not complete: %v", err)
	}
	return rep
}

func check(rep *Report, coll, name string) *Check {
	for _, c := range rep.Checks {
		if c.Collection == coll && c.Name == name {
			return c
		}
	}
	return nil
}

// failing lists collection/check of every check that did not pass.
func failing(rep *Report) string {
	var out []string
	for _, c := range rep.Checks {
		if c.Status != StatusPass {
			out = append(out, c.Collection+"/"+c.Name)
		}
	}
	return fmt.Sprint(out)
}

func reportText(rep *Report) string {
	var b fmtBuffer
	_ = rep.WriteText(&b)
	return string(b)
}

type fmtBuffer []byte

func (b *fmtBuffer) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }
