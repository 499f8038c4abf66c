package sink_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/event"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// typedUser is a users document with any _id.
func (e *env) typedUser(id any, email string) bson.D {
	at := bson.NewDateTimeFromTime(time.Unix(1.7e9, 0))
	return bson.D{{Key: "_id", Value: id}, {Key: "email", Value: email}, {Key: "username", Value: email},
		{Key: "role", Value: "user"}, {Key: "points", Value: bson.D{{Key: "available", Value: dec(e.t, "0")}, {Key: "used", Value: int32(0)}, {Key: "total", Value: dec(e.t, "0")}}},
		{Key: "createdAt", Value: at}, {Key: "updatedAt", Value: at}}
}

// typedEvent is a change event of the users document doc (nil for a
// delete) whose _id is id, at the next cluster time.
func (e *env) typedEvent(op event.Op, id any, doc bson.D) *event.Event {
	e.t.Helper()
	key, err := bson.Marshal(bson.D{{Key: "_id", Value: id}})
	if err != nil {
		e.t.Fatal(err)
	}
	ct := e.next()
	ev := &event.Event{V: event.Version, ID: fmt.Sprintf("%d.%d:%s:%T:%v", ct.T, ct.I, op, id, id), Op: op,
		Source: event.Source{DB: "escrow", Coll: "users", ClusterTime: ct}, Key: key}
	if doc != nil {
		if ev.Doc, err = bson.Marshal(doc); err != nil {
			e.t.Fatal(err)
		}
	}
	if op == event.OpUpdate {
		var changed bson.D
		for _, f := range doc {
			if f.Key == "email" {
				changed = append(changed, f)
			}
		}
		upd, _ := bson.Marshal(changed)
		ev.Update = &event.UpdateDescription{Updated: upd}
	}
	return ev
}

// emailOf is the email of the users row id_map maps key to ("" if none).
func (e *env) emailOf(key string) string {
	e.t.Helper()
	var email string
	err := e.pool.QueryRow(e.ctx, `SELECT coalesce(max(u.email), '') FROM id_map m JOIN users u ON u.id = m.new_id
		WHERE m.collection = 'users' AND m.legacy_object_id = $1`, key).Scan(&email)
	if err != nil {
		e.t.Fatal(err)
	}
	return email
}

// TestTypedIdentity (issue 14, item 2 and "Identity is typed"): a document
// is keyed by its _id's BSON type and value. ObjectId(X) and the string
// "X" are two rows, and deleting the string document leaves the
// ObjectId document's row; int32 7 and the string '{"$numberInt":"7"}'
// are two rows; and int32 7 then an update whose key is NumberLong(7) (one
// document in MongoDB, whose _id index compares numbers by value) is one
// row, updated.
func TestTypedIdentity(t *testing.T) {
	e := newEnv(t)
	oid := bson.NewObjectID()
	x := oid.Hex()
	r := e.start(e.config("a"))
	defer r.stop(t)

	e.publish(e.typedEvent(event.OpInsert, oid, e.typedUser(oid, "oid@example.com")),
		e.typedEvent(event.OpInsert, x, e.typedUser(x, "string@example.com")))
	e.waitCount("ObjectId(X) and the string X as two rows", 2, `SELECT count(*) FROM users`)
	if got := e.emailOf(x); got != "oid@example.com" {
		t.Fatalf("the row keyed %s is %q, want the ObjectId document's", x, got)
	}
	if got := e.emailOf(`"` + x + `"`); got != "string@example.com" {
		t.Fatalf("the row keyed \"%s\" (quoted) is %q, want the string document's", x, got)
	}

	e.publish(e.typedEvent(event.OpDelete, x, nil))
	e.waitCount("the string document's row deleted", 1, `SELECT count(*) FROM users`)
	if got := e.emailOf(x); got != "oid@example.com" {
		t.Fatalf("after deleting the string document, the ObjectId document's row is %q, want it kept", got)
	}
	var deleted bool
	if err := e.pool.QueryRow(e.ctx, `SELECT deleted FROM cdc.doc_versions WHERE collection = 'users' AND doc_key = $1`, x).Scan(&deleted); err != nil || deleted {
		t.Fatalf("the ObjectId document's version: deleted %v (%v), want live", deleted, err)
	}

	e.publish(e.typedEvent(event.OpInsert, int32(7), e.typedUser(int32(7), "seven@example.com")),
		e.typedEvent(event.OpInsert, `{"$numberInt":"7"}`, e.typedUser(`{"$numberInt":"7"}`, "json-seven@example.com")))
	e.waitCount("int32 7 and the string '{\"$numberInt\":\"7\"}' as two rows", 3, `SELECT count(*) FROM users`)

	e.publish(e.typedEvent(event.OpUpdate, int64(7), e.typedUser(int64(7), "seven-updated@example.com")))
	e.waitFor("the update keyed NumberLong(7) applied to int32 7's row", time.Minute, func() (bool, string) {
		got := e.emailOf(`{"$numberLong":"7"}`)
		return got == "seven-updated@example.com", fmt.Sprintf("row of 7: %q", got)
	})
	if n := e.count(`SELECT count(*) FROM users`); n != 3 {
		t.Fatalf("%d users rows after the update of NumberLong(7), want 3 (7 is one document)", n)
	}
	if n := e.count(`SELECT count(*) FROM id_map WHERE collection = 'users' AND legacy_object_id LIKE '{"$number%'`); n != 1 {
		t.Fatalf("%d id_map entries for numeric ids, want 1", n)
	}
	if got := e.emailOf(`"{\"$numberInt\":\"7\"}"`); got != "json-seven@example.com" {
		t.Fatalf("the string '{\"$numberInt\":\"7\"}' document's row is %q, want it untouched", got)
	}
	if n := e.count(`SELECT count(*) FROM cdc.dead_letters`); n != 0 {
		t.Fatalf("%d dead letters, want none", n)
	}
}
