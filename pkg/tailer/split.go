package tailer

import (
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Split events. With {$changeStreamSplitLargeEvent: {}} as the last stage
// (MongoDB 7.0, and 6.0.9+), an event over 16 MB arrives as fragments, in
// order, each with its own resume token (_id) and
// splitEvent: {fragment: <1..of>, of: <n>}; the event's top-level fields
// are distributed over the fragments, the first holding as many as fit,
// and no field is itself split
// (https://www.mongodb.com/docs/manual/reference/operator/aggregation/changeStreamSplitLargeEvent/).
// Resuming from a fragment's token starts at the next fragment; only the
// last fragment's token resumes after the whole event, so it is the only
// one that may become the checkpoint (and the event's id).

// ErrSplitEvent is returned for fragments that do not reassemble.
var ErrSplitEvent = errors.New("split change event does not reassemble")

// splitInfo reads a change document's splitEvent; ok is false for an
// unsplit event.
func splitInfo(raw bson.Raw) (fragment, of int32, ok bool, err error) {
	v, lerr := raw.LookupErr("splitEvent")
	if lerr != nil {
		return 0, 0, false, nil
	}
	d, isDoc := v.DocumentOK()
	if !isDoc {
		return 0, 0, true, fmt.Errorf("%w: splitEvent is a %s, not a document", ErrSplitEvent, v.Type)
	}
	f, fok := d.Lookup("fragment").AsInt64OK()
	n, nok := d.Lookup("of").AsInt64OK()
	if !fok || !nok || f < 1 || n < 1 || f > n || n > 1<<20 {
		return 0, 0, true, fmt.Errorf("%w: splitEvent %s", ErrSplitEvent, d)
	}
	return int32(f), int32(n), true, nil
}

// reassemble joins the fragments of one split event, in order, into one
// change document: every top-level field of every fragment except _id and
// splitEvent, in fragment order, and the last fragment's _id (the resume
// token after the whole event). It refuses a missing, repeated or
// out-of-order fragment, fragments disagreeing on the count, and a field
// present in two fragments.
func reassemble(frags []bson.Raw) (bson.Raw, error) {
	if len(frags) == 0 {
		return nil, fmt.Errorf("%w: no fragments", ErrSplitEvent)
	}
	var of int32
	for i, raw := range frags {
		f, n, ok, err := splitInfo(raw)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: fragment %d has no splitEvent", ErrSplitEvent, i+1)
		}
		if i == 0 {
			of = n
		}
		if n != of {
			return nil, fmt.Errorf("%w: fragment %d says of %d, the first said of %d", ErrSplitEvent, f, n, of)
		}
		if f != int32(i+1) {
			return nil, fmt.Errorf("%w: fragment %d of %d arrived in position %d", ErrSplitEvent, f, n, i+1)
		}
		if _, ok := raw.Lookup("_id").DocumentOK(); !ok {
			return nil, fmt.Errorf("%w: fragment %d has no resume token", ErrSplitEvent, f)
		}
	}
	if int32(len(frags)) != of {
		return nil, fmt.Errorf("%w: %d of %d fragments", ErrSplitEvent, len(frags), of)
	}
	tok := frags[len(frags)-1].Lookup("_id")
	idx, doc := bsoncore.AppendDocumentStart(nil)
	doc = bsoncore.AppendValueElement(doc, "_id", bsoncore.Value{Type: bsoncore.Type(tok.Type), Data: tok.Value})
	seen := map[string]int{}
	for i, raw := range frags {
		elems, err := raw.Elements()
		if err != nil {
			return nil, fmt.Errorf("%w: fragment %d: %v", ErrSplitEvent, i+1, err)
		}
		for _, e := range elems {
			k := e.Key()
			if k == "_id" || k == "splitEvent" {
				continue
			}
			if prev, dup := seen[k]; dup {
				return nil, fmt.Errorf("%w: field %q is in fragments %d and %d", ErrSplitEvent, k, prev, i+1)
			}
			seen[k] = i + 1
			v := e.Value()
			doc = bsoncore.AppendValueElement(doc, k, bsoncore.Value{Type: bsoncore.Type(v.Type), Data: v.Value})
		}
	}
	doc, err := bsoncore.AppendDocumentEnd(doc, idx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSplitEvent, err)
	}
	return bson.Raw(doc), nil
}
