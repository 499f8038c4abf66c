package mongotest

import (
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// ---- query helpers ----

type match struct {
	id  bsoncore.Value
	doc bsoncore.Document
}

// idEquality returns the _id value when filter pins _id to one value.
func idEquality(filter bsoncore.Document) (bsoncore.Value, bool) {
	v, err := filter.LookupErr("_id")
	if err != nil {
		return bsoncore.Value{}, false
	}
	if isOperatorDoc(v) {
		d := v.Document()
		elems, _ := d.Elements()
		if len(elems) == 1 && elems[0].Key() == "$eq" {
			v = elems[0].Value()
		} else {
			return bsoncore.Value{}, false
		}
	}
	switch v.Type {
	case bsoncore.TypeRegex, bsoncore.TypeArray, bsoncore.TypeNull, bsoncore.TypeUndefined:
		// Regexes and arrays match more than one _id and null also
		// matches a missing field: leave these to the full scan.
		return bsoncore.Value{}, false
	}
	return v, true
}

// idLowerBound returns a value every matching _id is >= to, if the filter
// has one ($gt/$gte on _id).
func idBound(filter bsoncore.Document, reverse bool) *bsoncore.Value {
	v, err := filter.LookupErr("_id")
	if err != nil || !isOperatorDoc(v) {
		return nil
	}
	elems, _ := v.Document().Elements()
	for _, e := range elems {
		k := e.Key()
		if (!reverse && (k == "$gt" || k == "$gte")) || (reverse && (k == "$lt" || k == "$lte")) {
			x := e.Value()
			if x.Type == bsoncore.TypeMinKey || x.Type == bsoncore.TypeMaxKey {
				return nil
			}
			return &x
		}
	}
	return nil
}

type sortKey struct {
	path []string
	desc bool
}

func parseSort(d bsoncore.Document) ([]sortKey, error) {
	elems, err := d.Elements()
	if err != nil {
		return nil, badValue("invalid sort: %v", err)
	}
	var out []sortKey
	for _, e := range elems {
		v := e.Value()
		if _, ok := v.DocumentOK(); ok {
			continue // {$meta: ...}
		}
		n, ok := v.AsInt64OK()
		if !ok || (n != 1 && n != -1) {
			return nil, badValue("$sort key ordering must be 1 (for ascending) or -1 (for descending)")
		}
		out = append(out, sortKey{path: strings.Split(e.Key(), "."), desc: n < 0})
	}
	return out, nil
}

// sortValue is the value a document sorts by for a key (missing sorts as
// null, arrays by their smallest element ascending / largest descending).
func sortValue(doc bsoncore.Document, k sortKey) bsoncore.Value {
	var c candidates
	collect(bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: doc}, k.path, &c, false)
	var best bsoncore.Value
	have := false
	for _, w := range c.whole {
		vals := []bsoncore.Value{w}
		if w.Type == bsoncore.TypeArray {
			vals, _ = bsoncore.Document(w.Data).Values()
			if len(vals) == 0 {
				vals = []bsoncore.Value{{Type: bsoncore.TypeUndefined}}
			}
		}
		for _, v := range vals {
			if !have || (!k.desc && compareValues(v, best) < 0) || (k.desc && compareValues(v, best) > 0) {
				best, have = v, true
			}
		}
	}
	if !have {
		return bsoncore.Value{Type: bsoncore.TypeNull}
	}
	return best
}

func sortMatches(ms []match, keys []sortKey) {
	slices.SortStableFunc(ms, func(a, b match) int {
		for _, k := range keys {
			c := compareValues(sortValue(a.doc, k), sortValue(b.doc, k))
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
}

// query returns the documents of ns matching filter, sorted, after skip
// and limit (limit <= 0: no limit).
func (s *Server) query(w *writer, ns nsKey, filter, sortDoc bsoncore.Document, skip, limit int) ([]match, error) {
	m, err := compileFilter(filter)
	if err != nil {
		return nil, err
	}
	var keys []sortKey
	if len(sortDoc) > 0 {
		if keys, err = parseSort(sortDoc); err != nil {
			return nil, err
		}
	}
	if ns.db == "local" && ns.coll == "oplog.rs" {
		return s.queryOplog(m, oplogBounds(filter), keys, skip, limit), nil
	}
	if len(keys) == 1 && (keys[0].path[0] == "$natural") {
		keys = []sortKey{{path: []string{"_id"}, desc: keys[0].desc}}
	}
	if id, ok := idEquality(filter); ok {
		var out []match
		if doc := w.get(ns, idKey(id)); doc != nil && m.match(doc) && skip == 0 {
			v, _ := docID(doc)
			out = append(out, match{v, doc})
		}
		return out, nil
	}
	byID := len(keys) == 0 || (len(keys) == 1 && len(keys[0].path) == 1 && keys[0].path[0] == "_id")
	reverse := byID && len(keys) == 1 && keys[0].desc
	var out []match
	stop := 0
	if byID && limit > 0 {
		stop = skip + limit
	}
	var from *bsoncore.Value
	if byID {
		from = idBound(filter, reverse)
	}
	w.scan(ns, reverse, from, func(id bsoncore.Value, doc bsoncore.Document) bool {
		if m.match(doc) {
			out = append(out, match{id, doc})
		}
		return stop == 0 || len(out) < stop
	})
	if !byID {
		sortMatches(out, keys)
	}
	return window(out, skip, limit), nil
}

func window(out []match, skip, limit int) []match {
	if skip > 0 {
		if skip >= len(out) {
			return nil
		}
		out = out[skip:]
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// queryOplog serves find on local.oplog.rs from the in-memory oplog.
func (s *Server) queryOplog(m matcher, b tsBounds, keys []sortKey, skip, limit int) []match {
	reverse := len(keys) == 1 && keys[0].path[0] == "$natural" && keys[0].desc
	natural := len(keys) == 0 || (len(keys) == 1 && keys[0].path[0] == "$natural")
	var out []match
	lo, hi := b.span(s.oplog)
	for i := lo; i < hi; i++ {
		e := s.oplog[i]
		if reverse {
			e = s.oplog[lo+hi-1-i]
		}
		d := s.oplogDoc(e)
		if d == nil {
			continue // a write inside a transaction's applyOps entry (applyops.go)
		}
		if m.match(d) {
			ts := e.oplogTs()
			out = append(out, match{bsoncore.Value{Type: bsoncore.TypeTimestamp, Data: bsoncore.AppendTimestamp(nil, ts.T, ts.I)}, d})
			if natural && limit > 0 && len(out) >= skip+limit {
				break
			}
		}
	}
	if !natural {
		sortMatches(out, keys)
	}
	return window(out, skip, limit)
}

// project applies a find projection (top-level inclusion or exclusion; a
// dotted path includes or excludes its top-level field).
func project(doc bsoncore.Document, proj bsoncore.Document) bsoncore.Document {
	if len(proj) <= 5 {
		return doc
	}
	elems, _ := proj.Elements()
	include := map[string]bool{}
	exclude := map[string]bool{}
	idOut := false
	inclusion := false
	for _, e := range elems {
		top := strings.SplitN(e.Key(), ".", 2)[0]
		v := e.Value()
		on := true
		if _, isDoc := v.DocumentOK(); !isDoc {
			on = truthy(v)
		}
		if top == "_id" {
			idOut = !on
			continue
		}
		if on {
			inclusion = true
			include[top] = true
		} else if !strings.Contains(e.Key(), ".") {
			exclude[top] = true
		}
	}
	de, _ := doc.Elements()
	idx, out := bsoncore.AppendDocumentStart(nil)
	for _, e := range de {
		k := e.Key()
		keep := true
		switch {
		case k == "_id":
			keep = !idOut
		case inclusion:
			keep = include[k]
		default:
			keep = !exclude[k]
		}
		if keep {
			out = append(out, e...)
		}
	}
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	return out
}
