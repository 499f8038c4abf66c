package transform

import (
	"bytes"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Duplicate field names. BSON allows a document to hold the same key more
// than once, and its readers disagree on which copy counts: the driver's
// lookups (bson.Raw.LookupErr) and so a column take the first, Mongoose
// and JavaScript (JSON.parse, object assignment) take the last, and a
// jsonb copy rendered through Extended JSON keeps the last too. A payment
// whose amount is 1.00 then 1000000.00 has no single amount, so the
// document is rejected naming the field rather than stored with one
// reading.
//
// What is checked: every document level the mapping opens, whole (all of
// its keys, not only those a column names, because functions and the sink
// read fields by name and two readings of any of them make the document
// ambiguous): the top-level document, each sub-document (and array) on a
// column's or a child's path, each element document of a child, and every
// depth of a value that goes to a jsonb column (it reaches Postgres whole).
// A duplicate inside a sub-document nothing opens (an unmapped field's
// value) never reaches Postgres and is accepted.

// duplicateField is a key that appears more than once in one document
// level the mapping reads.
type duplicateField struct {
	// field is the full dotted path from the document root, or, when
	// relative (inside a jsonb value), the path below the column's field.
	field       string
	relative    bool
	count       int
	first, last bson.RawValue
}

func (e *duplicateField) Error() string {
	return duplicateReason(e.field, e.count)
}

func duplicateReason(field string, count int) string {
	return fmt.Sprintf("duplicate field name: %s appears %d times in the document, and its readers disagree (a column reads the first copy; Mongoose, JavaScript and jsonb the last), so it has no single value", field, count)
}

// duplicateValue renders the copies of a duplicated field for a rejection.
func duplicateValue(count int, first, last bson.RawValue) string {
	if count > 2 {
		return fmt.Sprintf("%s then %d more copies, the last %s", valueText(first), count-1, valueText(last))
	}
	return valueText(first) + " then " + valueText(last)
}

// maxSmallLevel is the number of keys up to which a level is checked by
// comparing keys pairwise (no allocation); larger levels use a set.
const maxSmallLevel = 16

// checkLevel returns a *duplicateField for the first key of doc (a
// document or an array, whose own path is base) that appears more than
// once at its top level; nil when there is none or doc is malformed (the
// lookup that follows reports a malformed document).
func checkLevel(doc bson.Raw, base string) *duplicateField {
	var small [maxSmallLevel][]byte
	keys := small[:0]
	var set map[string]struct{}
	rem, ok := levelElements(doc)
	if !ok {
		return nil
	}
	for len(rem) > 0 {
		elem, r, ok := bsoncore.ReadElement(rem)
		if !ok {
			return nil
		}
		rem = r
		k := elem.KeyBytes()
		if set != nil {
			if _, dup := set[string(k)]; dup {
				return duplicateOf(doc, string(k), base)
			}
			set[string(k)] = struct{}{}
			continue
		}
		for _, prev := range keys {
			if bytes.Equal(prev, k) {
				return duplicateOf(doc, string(k), base)
			}
		}
		if len(keys) < maxSmallLevel {
			keys = append(keys, k)
			continue
		}
		set = make(map[string]struct{}, 2*maxSmallLevel)
		for _, prev := range keys {
			set[string(prev)] = struct{}{}
		}
		set[string(k)] = struct{}{}
	}
	return nil
}

// levelElements returns the elements of doc without its length and
// terminator; ok is false for a malformed document.
func levelElements(doc bson.Raw) (bsoncore.Document, bool) {
	length, rem, ok := bsoncore.ReadLength(doc)
	if !ok || int(length) != len(doc) || length < 5 || doc[len(doc)-1] != 0 {
		return nil, false
	}
	return bsoncore.Document(rem[:len(rem)-1]), true
}

// duplicateOf describes the copies of key in doc.
func duplicateOf(doc bson.Raw, key, base string) *duplicateField {
	dup := &duplicateField{field: join(base, key)}
	rem, _ := levelElements(doc)
	for len(rem) > 0 {
		elem, r, ok := bsoncore.ReadElement(rem)
		if !ok {
			break
		}
		rem = r
		if elem.Key() != key {
			continue
		}
		val, err := elem.ValueErr()
		if err != nil {
			break
		}
		v := bson.RawValue{Type: bson.Type(val.Type), Value: val.Data}
		if dup.count == 0 {
			dup.first = v
		}
		dup.last = v
		dup.count++
	}
	return dup
}
