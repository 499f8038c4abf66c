package mongotest

import (
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// tsBounds are the bounds a query's top-level ts predicate puts on the
// oplog entries that can match it. MongoDB bounds a collection scan of the
// oplog by them instead of reading it whole: the oplog is ordered by ts, so
// a query with ts $eq/$gt/$gte starts at the first entry at or after the
// bound and one with $eq/$lt/$lte stops after the last (SERVER-36186, 4.3.1:
// the getOplogStartHack of get_executor.cpp, once behind the oplogReplay
// flag, applied to every such query; the find command has ignored
// oplogReplay since). The bounds only narrow the scan: the whole filter is
// still matched against each entry, so a result is the same as a full
// scan's, only found without reading the entries that cannot match.
type tsBounds struct {
	lo, hi       bson.Timestamp
	hasLo, hasHi bool
	loIncl       bool // lo itself can match ($eq, $gte)
	hiIncl       bool // hi itself can match ($eq, $lte)
}

// oplogBounds reads the bounds of filter's top-level ts field: a timestamp
// (equality) or an operator document with $eq, $gt, $gte, $lt, $lte of a
// timestamp. Anything else (another type, $in, $or at the top level) leaves
// that side unbounded.
func oplogBounds(filter bsoncore.Document) tsBounds {
	var b tsBounds
	v, err := filter.LookupErr("ts")
	if err != nil {
		return b
	}
	if t, i, ok := v.TimestampOK(); ok {
		b.lower(bson.Timestamp{T: t, I: i}, true)
		b.upper(bson.Timestamp{T: t, I: i}, true)
		return b
	}
	ops, ok := v.DocumentOK()
	if !ok {
		return b
	}
	elems, err := ops.Elements()
	if err != nil {
		return b
	}
	for _, el := range elems {
		t, i, ok := el.Value().TimestampOK()
		if !ok {
			continue
		}
		ts := bson.Timestamp{T: t, I: i}
		switch el.Key() {
		case "$eq":
			b.lower(ts, true)
			b.upper(ts, true)
		case "$gte":
			b.lower(ts, true)
		case "$gt":
			b.lower(ts, false)
		case "$lte":
			b.upper(ts, true)
		case "$lt":
			b.upper(ts, false)
		}
	}
	return b
}

// lower tightens the lower bound to ts (the larger bound wins; at equal
// bounds the exclusive one).
func (b *tsBounds) lower(ts bson.Timestamp, incl bool) {
	if !b.hasLo || ts.After(b.lo) || (ts.Equal(b.lo) && !incl) {
		b.lo, b.loIncl, b.hasLo = ts, incl, true
	}
}

// upper tightens the upper bound to ts (the smaller bound wins; at equal
// bounds the exclusive one).
func (b *tsBounds) upper(ts bson.Timestamp, incl bool) {
	if !b.hasHi || ts.Before(b.hi) || (ts.Equal(b.hi) && !incl) {
		b.hi, b.hiIncl, b.hasHi = ts, incl, true
	}
}

// span is the half-open range [lo, hi) of oplog indexes whose entries can
// satisfy b, found by binary search: entries are appended in optime order,
// so oplogTs never decreases along the slice (the writes of one applyOps
// entry share its optime).
func (b tsBounds) span(oplog []*oplogEntry) (lo, hi int) {
	n := len(oplog)
	lo, hi = 0, n
	if b.hasLo {
		lo = sort.Search(n, func(i int) bool {
			c := oplog[i].oplogTs().Compare(b.lo)
			return c > 0 || (c == 0 && b.loIncl)
		})
	}
	if b.hasHi {
		hi = sort.Search(n, func(i int) bool {
			c := oplog[i].oplogTs().Compare(b.hi)
			return c > 0 || (c == 0 && !b.hiIncl)
		})
	}
	return lo, max(lo, hi)
}
