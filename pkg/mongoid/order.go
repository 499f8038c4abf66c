// Package mongoid holds MongoDB's ordering of _id values by type, for the
// scans (snapshot, verify) that walk a collection in _id order in chunks.
package mongoid

import (
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/bsontype"
)

// brackets are MongoDB's _id sort order by type: a range query ($gt)
// stays inside its value's bracket, so a scan moves to the next brackets
// explicitly. (Arrays, undefined and regular expressions cannot be an _id;
// symbol sorts with string.)
var brackets = [][]string{
	{"minKey"}, {"null"}, {"double", "int", "long", "decimal"}, {"string"}, {"object"},
	{"binData"}, {"objectId"}, {"bool"}, {"date"}, {"timestamp"}, {"maxKey"},
}

// Bracket is the position of t in MongoDB's cross-type sort order; an
// unknown type sorts after every known one.
func Bracket(t bsontype.Type) int {
	switch t {
	case bsontype.MinKey:
		return 0
	case bsontype.Null, bsontype.Undefined:
		return 1
	case bsontype.Double, bsontype.Int32, bsontype.Int64, bsontype.Decimal128:
		return 2
	case bsontype.String, bsontype.Symbol:
		return 3
	case bsontype.EmbeddedDocument:
		return 4
	case bsontype.Binary:
		return 5
	case bsontype.ObjectID:
		return 6
	case bsontype.Boolean:
		return 7
	case bsontype.DateTime:
		return 8
	case bsontype.Timestamp:
		return 9
	case bsontype.MaxKey:
		return 10
	}
	return len(brackets)
}

// TypesAbove lists the $type names of the brackets after t's, for the
// filter {_id: {$type: [...]}} that continues a scan past t's bracket.
func TypesAbove(t bsontype.Type) bson.A {
	var out bson.A
	for i := Bracket(t) + 1; i < len(brackets); i++ {
		for _, n := range brackets[i] {
			out = append(out, n)
		}
	}
	return out
}
