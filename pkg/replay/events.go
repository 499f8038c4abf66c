package replay

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
)

// The events of `replay ids` are built by event.FromDocument (OpRefresh,
// OpDelete: ids "ref:" and "refdel:"), as snapshot's are (OpSnapshot).

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
