package event

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/amanat/cdc/pkg/mongoid"
)

// KeyString is the document key of an _id value: the string id_map
// (legacy_object_id), cdc.doc_versions, cdc.dead_letters,
// cdc.deferred_events and cdc.dangling_refs (doc_key) key a document by.
// It is typed: two _ids MongoDB tells apart never share a key, and two
// _ids it holds equal (one document) always do.
//
//   - ObjectId: its 24 lower-case hex digits (the form every mapping made
//     before typed keys has, so none is re-minted).
//   - String (and the deprecated symbol, which the _id index stores as a
//     string: both are KeyString kStringLike, mongodb/mongo
//     src/mongo/db/storage/key_string/key_string.cpp): the string itself,
//     unless it could be read as another type's key. An ambiguous string
//     is written JSON-quoted ("\"65f1...\""), which is its canonical
//     Extended JSON. Ambiguous: 24 hex digits in any case (an ObjectId's
//     key; and a reference or an operator's id in upper case means that
//     ObjectId too), a string that begins with '{' (Extended JSON of
//     another type) or '"' (a quoted string), and the strings "true",
//     "false" and "null" (the keys of the boolean and null _ids: the
//     issue's list is widened by these three, the only other unwrapped
//     Extended JSON values). Every other string keeps the form it always
//     had.
//   - Numbers (int32, int64, double, decimal128): one key per value, as
//     MongoDB compares them (mongoid.NumberKey: int32 7, int64 7, 7.0 and
//     decimal 7 are one document in MongoDB, and one row here).
//   - Anything else (binary, date, embedded document, boolean, null,
//     MinKey, ...): canonical Extended JSON. MongoDB compares an embedded
//     document's numeric fields by value too ({a: 7} and {a: NumberLong(7)}
//     are one _id there); they are not normalised here, so such a pair
//     would be two rows. No mapped collection has document _ids.
//
// The quoting escapes as PostgreSQL's to_json does (", \, \b \f \n \r \t
// short, other control bytes \u00XX, everything else verbatim), so that
// the migration 00018_typed_document_keys.sql writes the same bytes.
func KeyString(v bson.RawValue) string {
	switch v.Type {
	case bson.TypeObjectID:
		return v.ObjectID().Hex()
	case bson.TypeString:
		return stringKey(v.StringValue())
	case bson.TypeSymbol:
		return stringKey(v.Symbol())
	}
	if k, ok := mongoid.NumberKey(v); ok {
		return k
	}
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, true, false)
	if err != nil {
		return v.String()
	}
	// {"v":X} -> X
	return string(b[5 : len(b)-1])
}

// stringKey is the key of a string _id.
func stringKey(s string) string {
	if AmbiguousString(s) {
		return QuoteKey(s)
	}
	return s
}

// AmbiguousString reports whether the string s, written as itself, could
// be read as the key of an _id of another type (see KeyString); such a
// string's key is QuoteKey(s).
func AmbiguousString(s string) bool {
	switch {
	case len(s) == 24 && isHex(s):
		return true
	case strings.HasPrefix(s, "{"), strings.HasPrefix(s, `"`):
		return true
	case s == "true", s == "false", s == "null":
		return true
	}
	return false
}

// QuoteKey JSON-quotes s with PostgreSQL's to_json escaping.
func QuoteKey(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// ErrBadKey marks a document key that names no _id value (a quoted
// string that is not valid JSON, a '{' that is not Extended JSON).
var ErrBadKey = errors.New("not a document key")

// ParseKey returns the _id value a document key names: the inverse of
// KeyString (KeyString(ParseKey(k)) == k for every key KeyString makes),
// and the reading of the ids an operator or a log gives:
//
//   - 24 hex digits, in any case: that ObjectId;
//   - "..." (JSON-quoted): that string;
//   - {...}: canonical Extended JSON of that value; for a number, any
//     numeric form names the document of that value ({"$numberInt":"7"},
//     {"$numberLong":"7"} and {"$numberDouble":"7.0"} are one document);
//   - true, false, null: the boolean or null _id;
//   - anything else: that string.
//
// A numeric value is returned in the type its key has, which MongoDB's
// equality matches whatever type the document's _id is. CanonicalKey
// turns a key as given into KeyString's form.
func ParseKey(key string) (bson.RawValue, error) {
	switch {
	case len(key) == 24 && isHex(key):
		var oid bson.ObjectID
		if _, err := hex.Decode(oid[:], []byte(key)); err != nil {
			return bson.RawValue{}, fmt.Errorf("%w: %q: %v", ErrBadKey, key, err)
		}
		return bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]}, nil
	case key == "true", key == "false":
		return bson.RawValue{Type: bson.TypeBoolean, Value: bsoncore.AppendBoolean(nil, key == "true")}, nil
	case key == "null":
		return bson.RawValue{Type: bson.TypeNull}, nil
	case strings.HasPrefix(key, `"`):
		var s string
		if err := json.Unmarshal([]byte(key), &s); err != nil {
			return bson.RawValue{}, fmt.Errorf("%w: %.80q begins with a quote but is not one JSON string: %v", ErrBadKey, key, err)
		}
		return stringValue(s), nil
	case strings.HasPrefix(key, "{"):
		var d bson.Raw
		if err := bson.UnmarshalExtJSON([]byte(`{"v":`+key+`}`), true, &d); err != nil {
			return bson.RawValue{}, fmt.Errorf("%w: %.80q begins with '{' but is not canonical Extended JSON: %v", ErrBadKey, key, err)
		}
		v, err := d.LookupErr("v")
		if err != nil {
			return bson.RawValue{}, fmt.Errorf("%w: %.80q: %v", ErrBadKey, key, err)
		}
		return v, nil
	}
	return stringValue(key), nil
}

// CanonicalKey is KeyString(ParseKey(key)): the key of the _id key names,
// in the form the bookkeeping tables store (an upper-case ObjectId in
// lower case, {"$numberInt":"7"} as {"$numberLong":"7"}, ...).
func CanonicalKey(key string) (string, error) {
	v, err := ParseKey(key)
	if err != nil {
		return "", err
	}
	return KeyString(v), nil
}

func stringValue(s string) bson.RawValue {
	return bson.RawValue{Type: bson.TypeString, Value: bsoncore.AppendString(nil, s)}
}
