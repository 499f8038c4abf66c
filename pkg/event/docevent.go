package event

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Event id prefixes of the events made from a document read (FromDocument:
// `cdc snapshot`, `cdc replay ids`). Change-stream events have the
// tailer's ids (TokenID).
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
// document key (KeyString form) and the read's cluster time. It depends
// only on the document and the read, so reading the same document at the
// same time again gives the same id, which the dedup window drops.
func DocEventID(prefix, db, coll, key string, at ClusterTime) string {
	return prefix + db + "." + coll + ":" + key + ":" + at.String()
}

// KeyDoc returns the document key {_id: id}, the Key of an event.
func KeyDoc(id bson.RawValue) bson.Raw {
	return bson.Raw(bsoncore.BuildDocument(nil, bsoncore.AppendValueElement(nil, "_id", bsoncore.Value{Type: bsoncore.Type(id.Type), Data: id.Value})))
}

// FromDocument builds a snapshot (OpSnapshot), refresh (OpRefresh) or
// delete (OpDelete: the document was found missing) event for a document
// read at cluster time at. doc is nil for OpDelete (and ignored). The
// position is (at, 0): any change after the read is newer and wins the
// sink's version guard; the read already contains every change up to it.
func FromDocument(op Op, db, coll string, id bson.RawValue, doc bson.Raw, at ClusterTime) *Event {
	prefix := PrefixRefresh
	switch op {
	case OpSnapshot:
		prefix = PrefixSnapshot
	case OpDelete:
		prefix = PrefixRefreshDelete
	}
	ev := &Event{
		V:      Version,
		ID:     DocEventID(prefix, db, coll, KeyString(id), at),
		Op:     op,
		Source: Source{DB: db, Coll: coll, ClusterTime: at},
		Key:    KeyDoc(id),
	}
	if op != OpDelete {
		ev.Doc = doc
	}
	return ev
}
