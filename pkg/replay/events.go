package replay

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/amanat/cdc/pkg/event"
)

// Event id prefixes of the events this package and package snapshot make.
// Change-stream events keep the tailer's ids (event.TokenID).
const (
	// PrefixSnapshot: "snap:<db>.<coll>:<key>:<t>.<i>", one per document
	// and snapshot start time, so a re-run of the same snapshot is
	// dropped by JetStream's dedup window.
	PrefixSnapshot = "snap:"
	// PrefixRefresh: "ref:<db>.<coll>:<key>:<t>.<i>", a document re-read
	// at cluster time t.i.
	PrefixRefresh = "ref:"
	// PrefixRefreshDelete: "refdel:<db>.<coll>:<key>:<t>.<i>", a document
	// found missing at cluster time t.i.
	PrefixRefreshDelete = "refdel:"
)

// DocEventID is the id of a snapshot or refresh event: prefix, namespace,
// document key (event.KeyString form) and the read's cluster time.
func DocEventID(prefix, db, coll, key string, at event.ClusterTime) string {
	return prefix + db + "." + coll + ":" + key + ":" + at.String()
}

// KeyDoc returns the document key {_id: id}.
func KeyDoc(id bson.RawValue) bson.Raw {
	return bson.Raw(bsoncore.BuildDocument(nil, bsoncore.AppendValueElement(nil, "_id", bsoncore.Value{Type: bsoncore.Type(id.Type), Data: id.Value})))
}

// DocEvent builds a snapshot, refresh or delete event for a document read
// (or found missing) at cluster time at. doc is nil for OpDelete. The
// position is (at, 0): any change after the read is newer and wins the
// version guard; the read already contains every change up to it.
func DocEvent(op event.Op, db, coll string, id bson.RawValue, doc bson.Raw, at event.ClusterTime) *event.Event {
	key := event.KeyString(id)
	prefix := PrefixRefresh
	switch op {
	case event.OpSnapshot:
		prefix = PrefixSnapshot
	case event.OpDelete:
		prefix = PrefixRefreshDelete
	}
	ev := &event.Event{
		V:      event.Version,
		ID:     DocEventID(prefix, db, coll, key, at),
		Op:     op,
		Source: event.Source{DB: db, Coll: coll, ClusterTime: at},
		Key:    KeyDoc(id),
	}
	if op != event.OpDelete {
		ev.Doc = doc
	}
	return ev
}

// KeyCandidates returns the _id values to look a document key up by in
// MongoDB (a key as id_map.legacy_object_id, the dead letters and
// pg_dualwrite_gaps store it, or as an operator gives it; see
// event.ParseKey): since keys are typed, one value. 24 hex digits are that
// ObjectId (a string _id of 24 hex digits has a quoted key); a numeric key
// finds the document of that value whatever its numeric type (MongoDB's
// query equality compares numbers by value, as its _id index does).
func KeyCandidates(key string) ([]bson.RawValue, error) {
	v, err := event.ParseKey(key)
	if err != nil {
		return nil, err // names the key
	}
	return []bson.RawValue{v}, nil
}
