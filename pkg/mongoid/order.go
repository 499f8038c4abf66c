// Package mongoid holds what MongoDB means by _id values: their ordering
// by type, for the scans (snapshot, verify) that walk a collection in _id
// order in chunks, and the equality of numeric _ids by value
// (NumberKey), for the document keys (event.KeyString).
package mongoid

import (
	"go.mongodb.org/mongo-driver/v2/bson"
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
func Bracket(t bson.Type) int {
	switch t {
	case bson.TypeMinKey:
		return 0
	case bson.TypeNull, bson.TypeUndefined:
		return 1
	case bson.TypeDouble, bson.TypeInt32, bson.TypeInt64, bson.TypeDecimal128:
		return 2
	case bson.TypeString, bson.TypeSymbol:
		return 3
	case bson.TypeEmbeddedDocument:
		return 4
	case bson.TypeBinary:
		return 5
	case bson.TypeObjectID:
		return 6
	case bson.TypeBoolean:
		return 7
	case bson.TypeDateTime:
		return 8
	case bson.TypeTimestamp:
		return 9
	case bson.TypeMaxKey:
		return 10
	}
	return len(brackets)
}

// TypesAbove lists the $type names of the brackets after t's, for the
// filter {_id: {$type: [...]}} that continues a scan past t's bracket.
func TypesAbove(t bson.Type) bson.A {
	var out bson.A
	for i := Bracket(t) + 1; i < len(brackets); i++ {
		for _, n := range brackets[i] {
			out = append(out, n)
		}
	}
	return out
}
