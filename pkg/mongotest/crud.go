package mongotest

import (
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

func (r *request) ns() (nsKey, error) {
	name, err := r.collName()
	if err != nil {
		return nsKey{}, err
	}
	return nsKey{r.db, name}, nil
}

func checkWritable(ns nsKey) error {
	if ns.db == "local" && ns.coll == "oplog.rs" {
		return newError(20, "cannot write to 'local.oplog.rs'")
	}
	if strings.Contains(ns.coll, "$") || ns.coll == "" {
		return newError(codeInvalidNamespace, "Invalid collection name: %s", ns.coll)
	}
	return nil
}

func dupKeyError(ns nsKey, id bsoncore.Value) *writeError {
	return &writeError{code: codeDuplicateKey, msg: "E11000 duplicate key error collection: " + ns.String() + " index: _id_ dup key: { _id: " + id.String() + " }"}
}

func writeErrorsReply(d bson.D, errs bson.A) bson.D {
	if len(errs) > 0 {
		d = append(d, bson.E{Key: "writeErrors", Value: errs})
	}
	return d
}

func writeErrorDoc(i int, err *writeError) bson.D {
	return bson.D{{Key: "index", Value: int32(i)}, {Key: "code", Value: err.code}, {Key: "errmsg", Value: err.msg}}
}

// ---- insert ----

func (s *Server) cmdInsert(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	if err := checkWritable(ns); err != nil {
		return nil, err
	}
	docs, err := r.docs("documents")
	if err != nil {
		return nil, err
	}
	ordered := true
	if v, ok := r.arg("ordered"); ok {
		ordered = truthy(v)
	}
	n := 0
	var werrs bson.A
	for i, doc := range docs {
		err := s.insertOne(r.w, ns, doc)
		if err == nil {
			n++
			continue
		}
		we, ok := err.(*writeError)
		if !ok {
			return nil, err
		}
		werrs = append(werrs, writeErrorDoc(i, we))
		if ordered || r.txn != nil {
			break
		}
	}
	if len(werrs) > 0 && r.txn != nil {
		s.abortTxn(r.txn, "a write in the transaction failed")
	}
	return writeErrorsReply(bson.D{{Key: "n", Value: int32(n)}}, werrs), nil
}

func (s *Server) insertOne(w *writer, ns nsKey, doc bsoncore.Document) error {
	if len(doc) > maxBSONSize {
		return &writeError{code: 10334, msg: "object to insert exceeds the maximum BSON size"}
	}
	d, id, err := withIDFirst(doc)
	if err != nil {
		return &writeError{code: codeBadValue, msg: err.Error()}
	}
	if !validID(id) {
		return &writeError{code: 53, msg: "The '_id' value cannot be of type " + typeName(id.Type)}
	}
	key := idKey(id)
	if w.get(ns, key) != nil {
		return dupKeyError(ns, id)
	}
	return w.write(ns, opInsert, id, key, nil, d, nil)
}

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
		return s.queryOplog(m, keys, skip, limit), nil
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
func (s *Server) queryOplog(m matcher, keys []sortKey, skip, limit int) []match {
	reverse := len(keys) == 1 && keys[0].path[0] == "$natural" && keys[0].desc
	natural := len(keys) == 0 || (len(keys) == 1 && keys[0].path[0] == "$natural")
	var out []match
	n := len(s.oplog)
	for i := 0; i < n; i++ {
		e := s.oplog[i]
		if reverse {
			e = s.oplog[n-1-i]
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

// ---- find / getMore / killCursors ----

// findCursor is a cursor over materialised results.
type findCursor struct {
	id      int64
	ns      string
	docs    []bsoncore.Document
	lastUse time.Time
}

const defaultBatch = 101

// takeBatch splits off up to n documents (n <= 0: no count limit), also
// stopping at about 16MB.
func takeBatch(docs []bsoncore.Document, n int) ([]bsoncore.Document, []bsoncore.Document) {
	size := 0
	i := 0
	for i < len(docs) {
		if n > 0 && i >= n {
			break
		}
		if i > 0 && size+len(docs[i]) > maxBSONSize-(1<<16) {
			break
		}
		size += len(docs[i])
		i++
	}
	return docs[:i], docs[i:]
}

func rawSlice(docs []bsoncore.Document) []bson.Raw {
	out := make([]bson.Raw, len(docs))
	for i, d := range docs {
		out[i] = bson.Raw(d)
	}
	return out
}

// cursorTimeout is how long an unused cursor lives (MongoDB's default
// cursorTimeoutMillis).
const cursorTimeout = 10 * time.Minute

func (s *Server) newCursorID() int64 {
	s.cursorID++
	if now := time.Now(); now.Sub(s.swept) > time.Minute {
		s.swept = now
		for id, c := range s.cursors {
			var last time.Time
			switch c := c.(type) {
			case *findCursor:
				last = c.lastUse
			case *csCursor:
				last = c.lastUse
				if c.inUse {
					continue
				}
			}
			if now.Sub(last) > cursorTimeout {
				delete(s.cursors, id)
			}
		}
	}
	return s.cursorID
}

// cursorReply returns the first batch and registers a cursor for the rest.
func (s *Server) cursorReply(ns string, docs []bsoncore.Document, batchSize int, single bool) bson.D {
	if batchSize < 0 {
		batchSize = 0
	}
	n := batchSize
	if n == 0 {
		n = defaultBatch
	}
	first, rest := takeBatch(docs, n)
	var id int64
	if len(rest) > 0 && !single {
		id = s.newCursorID()
		s.cursors[id] = &findCursor{id: id, ns: ns, docs: rest, lastUse: time.Now()}
	}
	return bson.D{{Key: "cursor", Value: bson.D{
		{Key: "firstBatch", Value: rawSlice(first)},
		{Key: "id", Value: id},
		{Key: "ns", Value: ns},
	}}}
}

func (s *Server) cmdFind(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	filter, err := r.docArg("filter")
	if err != nil {
		return nil, err
	}
	sortDoc, err := r.docArg("sort")
	if err != nil {
		return nil, err
	}
	proj, err := r.docArg("projection")
	if err != nil {
		return nil, err
	}
	skip, _ := r.intArg("skip")
	limit, _ := r.intArg("limit")
	batchSize, hasBatch := r.intArg("batchSize")
	single := r.boolArg("singleBatch")
	if limit < 0 {
		limit, single = -limit, true
	}
	if skip < 0 || batchSize < 0 {
		return nil, badValue("skip and batchSize must be non-negative")
	}
	ms, err := s.query(r.w, ns, filter, sortDoc, int(skip), int(limit))
	if err != nil {
		return nil, err
	}
	docs := make([]bsoncore.Document, len(ms))
	for i, m := range ms {
		docs[i] = project(m.doc, proj)
	}
	bs := int(batchSize)
	if !hasBatch {
		bs = defaultBatch
	} else if bs == 0 {
		// batchSize 0: an empty first batch and a cursor for everything.
		var id int64
		if len(docs) > 0 && !single {
			id = s.newCursorID()
			s.cursors[id] = &findCursor{id: id, ns: ns.String(), docs: docs, lastUse: time.Now()}
		}
		return bson.D{{Key: "cursor", Value: bson.D{
			{Key: "firstBatch", Value: bson.A{}}, {Key: "id", Value: id}, {Key: "ns", Value: ns.String()},
		}}}, nil
	}
	return s.cursorReply(ns.String(), docs, bs, single), nil
}

func (s *Server) cmdGetMore(r *request) (bson.D, error) {
	v, _ := r.arg("getMore")
	id, ok := v.AsInt64OK()
	if !ok || v.Type != bsoncore.TypeInt64 {
		return nil, newError(codeTypeMismatch, "BSON field 'getMore.getMore' is the wrong type '%s', expected type 'long'", typeName(v.Type))
	}
	batchSize, _ := r.intArg("batchSize")
	cur, ok := s.cursors[id]
	if !ok {
		return nil, newError(codeCursorNotFound, "cursor id %d not found", id)
	}
	switch c := cur.(type) {
	case *findCursor:
		c.lastUse = time.Now()
		batch, rest := takeBatch(c.docs, int(batchSize))
		c.docs = rest
		rid := c.id
		if len(rest) == 0 {
			delete(s.cursors, id)
			rid = 0
		}
		return bson.D{{Key: "cursor", Value: bson.D{
			{Key: "nextBatch", Value: rawSlice(batch)},
			{Key: "id", Value: rid},
			{Key: "ns", Value: c.ns},
		}}}, nil
	case *csCursor:
		c.lastUse = time.Now()
		wait := s.opts.DefaultAwaitTime
		if ms, ok := r.intArg("maxTimeMS"); ok && ms > 0 {
			wait = msDuration(ms)
		}
		return s.changeStreamGetMore(r, c, int(batchSize), wait)
	}
	return nil, newError(codeCursorNotFound, "cursor id %d not found", id)
}

func (s *Server) cmdKillCursors(r *request) (bson.D, error) {
	v, ok := r.arg("cursors")
	if !ok {
		return nil, badValue("killCursors needs cursors")
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, badValue("cursors must be an array")
	}
	vals, _ := arr.Values()
	killed, notFound := bson.A{}, bson.A{}
	for _, x := range vals {
		id, _ := x.AsInt64OK()
		if _, ok := s.cursors[id]; ok {
			delete(s.cursors, id)
			killed = append(killed, id)
		} else {
			notFound = append(notFound, id)
		}
	}
	return bson.D{
		{Key: "cursorsKilled", Value: killed},
		{Key: "cursorsNotFound", Value: notFound},
		{Key: "cursorsAlive", Value: bson.A{}},
		{Key: "cursorsUnknown", Value: bson.A{}},
	}, nil
}

// ---- update / delete / findAndModify ----

// matching returns the visible documents of ns matching filter in _id
// order, at most limit (0: all).
func (s *Server) matching(w *writer, ns nsKey, filter bsoncore.Document, limit int) ([]match, error) {
	return s.query(w, ns, filter, nil, 0, limit)
}

// updateDoc applies spec to one matched document. It reports whether the
// document changed.
func (s *Server) updateDoc(w *writer, ns nsKey, m match, spec *updateSpec) (bool, bsoncore.Document, error) {
	res, err := applyUpdate(spec, m.doc, false)
	if err != nil {
		return false, nil, err
	}
	if !res.changed {
		return false, m.doc, nil
	}
	if len(res.doc) > maxBSONSize {
		return false, nil, &writeError{code: 17419, msg: "Resulting document after update is larger than 16777216"}
	}
	kind := opUpdate
	if res.replaced {
		kind = opReplace
	}
	if err := w.write(ns, kind, m.id, idKey(m.id), m.doc, res.doc, res.desc); err != nil {
		return false, nil, err
	}
	return true, res.doc, nil
}

// upsertDoc inserts the document an upsert creates.
func (s *Server) upsertDoc(w *writer, ns nsKey, filter bsoncore.Document, spec *updateSpec) (bsoncore.Value, bsoncore.Document, error) {
	seed, err := upsertSeed(filter)
	if err != nil {
		return bsoncore.Value{}, nil, err
	}
	var doc bsoncore.Document
	if spec.isReplacement() {
		doc = spec.replacement
		if _, has := docID(doc); !has {
			if idv, ok := getPath(seed, []string{"_id"}); ok {
				b, _ := bson.Marshal(bson.D{{Key: "_id", Value: idv}})
				elems, _ := doc.Elements()
				idx, out := bsoncore.AppendDocumentStart(nil)
				out = append(out, bsoncore.Document(b).Index(0)...)
				for _, e := range elems {
					out = append(out, e...)
				}
				out, _ = bsoncore.AppendDocumentEnd(out, idx)
				doc = out
			}
		}
	} else {
		b, err := bson.Marshal(seed)
		if err != nil {
			return bsoncore.Value{}, nil, badValue("cannot build upsert document: %v", err)
		}
		res, err := applyUpdate(spec, b, true)
		if err != nil {
			return bsoncore.Value{}, nil, err
		}
		doc = res.doc
	}
	d, id, err := withIDFirst(doc)
	if err != nil {
		return bsoncore.Value{}, nil, err
	}
	if !validID(id) {
		return bsoncore.Value{}, nil, &writeError{code: 53, msg: "The '_id' value cannot be of type " + typeName(id.Type)}
	}
	key := idKey(id)
	if w.get(ns, key) != nil {
		return bsoncore.Value{}, nil, dupKeyError(ns, id)
	}
	if err := w.write(ns, opInsert, id, key, nil, d, nil); err != nil {
		return bsoncore.Value{}, nil, err
	}
	return id, d, nil
}

func (s *Server) cmdUpdate(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	if err := checkWritable(ns); err != nil {
		return nil, err
	}
	stmts, err := r.docs("updates")
	if err != nil {
		return nil, err
	}
	ordered := true
	if v, ok := r.arg("ordered"); ok {
		ordered = truthy(v)
	}
	var n, modified int32
	var werrs, upserted bson.A
	for i, st := range stmts {
		nn, mm, up, err := s.updateStatement(r.w, ns, st)
		if err != nil {
			if ce, ok := err.(*cmdError); ok && (ce.code == codeWriteConflict || len(ce.labels) > 0) {
				return nil, err
			}
			we, ok := err.(*writeError)
			if !ok {
				ce := asCmdError(err)
				we = &writeError{code: ce.code, msg: ce.msg}
			}
			werrs = append(werrs, writeErrorDoc(i, we))
			if ordered || r.txn != nil {
				break
			}
			continue
		}
		n += nn
		modified += mm
		if up != nil {
			upserted = append(upserted, bson.D{{Key: "index", Value: int32(i)}, {Key: "_id", Value: toGo(*up)}})
		}
	}
	if len(werrs) > 0 && r.txn != nil {
		s.abortTxn(r.txn, "a write in the transaction failed")
	}
	d := bson.D{{Key: "n", Value: n}, {Key: "nModified", Value: modified}}
	if len(upserted) > 0 {
		d = append(d, bson.E{Key: "upserted", Value: upserted})
	}
	return writeErrorsReply(d, werrs), nil
}

func (s *Server) updateStatement(w *writer, ns nsKey, st bsoncore.Document) (n, modified int32, upserted *bsoncore.Value, err error) {
	q, _ := st.Lookup("q").DocumentOK()
	uv, err2 := st.LookupErr("u")
	if err2 != nil {
		return 0, 0, nil, newError(codeFailedToParse, "update statement needs u")
	}
	multi := truthy(st.Lookup("multi"))
	upsert := truthy(st.Lookup("upsert"))
	if _, err := st.LookupErr("arrayFilters"); err == nil {
		return 0, 0, nil, newError(codeFailedToParse, "mongotest: arrayFilters are not supported")
	}
	spec, err := parseUpdate(uv)
	if err != nil {
		return 0, 0, nil, err
	}
	if multi && spec.isReplacement() {
		return 0, 0, nil, newError(codeFailedToParse, "multi update is not supported for replacement-style update")
	}
	limit := 1
	if multi {
		limit = 0
	}
	ms, err := s.matching(w, ns, q, limit)
	if err != nil {
		return 0, 0, nil, err
	}
	if len(ms) == 0 {
		if !upsert {
			return 0, 0, nil, nil
		}
		id, _, err := s.upsertDoc(w, ns, q, spec)
		if err != nil {
			return 0, 0, nil, err
		}
		return 1, 0, &id, nil
	}
	for _, m := range ms {
		changed, _, err := s.updateDoc(w, ns, m, spec)
		if err != nil {
			return n, modified, nil, err
		}
		n++
		if changed {
			modified++
		}
	}
	return n, modified, nil, nil
}

func (s *Server) cmdDelete(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	if err := checkWritable(ns); err != nil {
		return nil, err
	}
	stmts, err := r.docs("deletes")
	if err != nil {
		return nil, err
	}
	ordered := true
	if v, ok := r.arg("ordered"); ok {
		ordered = truthy(v)
	}
	var n int32
	var werrs bson.A
	for i, st := range stmts {
		q, _ := st.Lookup("q").DocumentOK()
		lim, _ := st.Lookup("limit").AsInt64OK()
		if lim != 0 && lim != 1 {
			werrs = append(werrs, writeErrorDoc(i, &writeError{code: codeFailedToParse, msg: "The limit field in delete objects must be 0 or 1."}))
			if ordered {
				break
			}
			continue
		}
		ms, err := s.matching(r.w, ns, q, int(lim))
		if err != nil {
			werrs = append(werrs, writeErrorDoc(i, &writeError{code: asCmdError(err).code, msg: asCmdError(err).msg}))
			if ordered {
				break
			}
			continue
		}
		for _, m := range ms {
			if err := r.w.write(ns, opDelete, m.id, idKey(m.id), m.doc, nil, nil); err != nil {
				return nil, err
			}
			n++
		}
	}
	return writeErrorsReply(bson.D{{Key: "n", Value: n}}, werrs), nil
}

func (s *Server) cmdFindAndModify(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	if err := checkWritable(ns); err != nil {
		return nil, err
	}
	q, err := r.docArg("query")
	if err != nil {
		return nil, err
	}
	sortDoc, err := r.docArg("sort")
	if err != nil {
		return nil, err
	}
	fields, err := r.docArg("fields")
	if err != nil {
		return nil, err
	}
	remove := r.boolArg("remove")
	returnNew := r.boolArg("new")
	upsert := r.boolArg("upsert")
	uv, hasUpdate := r.arg("update")
	if remove == hasUpdate {
		return nil, newError(codeFailedToParse, "Either an update or remove=true must be specified")
	}
	ms, err := s.query(r.w, ns, q, sortDoc, 0, 1)
	if err != nil {
		return nil, err
	}
	leo := bson.D{}
	var value any
	switch {
	case remove:
		if len(ms) > 0 {
			m := ms[0]
			if err := r.w.write(ns, opDelete, m.id, idKey(m.id), m.doc, nil, nil); err != nil {
				return nil, err
			}
			value = bson.Raw(project(m.doc, fields))
			leo = append(leo, bson.E{Key: "n", Value: int32(1)})
		} else {
			leo = append(leo, bson.E{Key: "n", Value: int32(0)})
		}
	default:
		spec, err := parseUpdate(uv)
		if err != nil {
			return nil, err
		}
		if len(ms) > 0 {
			m := ms[0]
			_, nd, err := s.updateDoc(r.w, ns, m, spec)
			if err != nil {
				return nil, err
			}
			if returnNew {
				value = bson.Raw(project(nd, fields))
			} else {
				value = bson.Raw(project(m.doc, fields))
			}
			leo = append(leo, bson.E{Key: "n", Value: int32(1)}, bson.E{Key: "updatedExisting", Value: true})
		} else if upsert {
			id, nd, err := s.upsertDoc(r.w, ns, q, spec)
			if err != nil {
				return nil, err
			}
			if returnNew {
				value = bson.Raw(project(nd, fields))
			}
			leo = append(leo, bson.E{Key: "n", Value: int32(1)}, bson.E{Key: "updatedExisting", Value: false}, bson.E{Key: "upserted", Value: toGo(id)})
		} else {
			leo = append(leo, bson.E{Key: "n", Value: int32(0)}, bson.E{Key: "updatedExisting", Value: false})
		}
	}
	return bson.D{{Key: "lastErrorObject", Value: leo}, {Key: "value", Value: value}}, nil
}

// ---- count / distinct ----

func (s *Server) cmdCount(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	q, err := r.docArg("query")
	if err != nil {
		return nil, err
	}
	skip, _ := r.intArg("skip")
	limit, _ := r.intArg("limit")
	if limit < 0 {
		limit = -limit
	}
	var n int
	if len(q) <= 5 && r.w.txn == nil && ns.db != "local" {
		if c := s.coll(ns); c != nil {
			n = len(c.docs)
		}
		n -= int(skip)
		if n < 0 {
			n = 0
		}
		if limit > 0 && n > int(limit) {
			n = int(limit)
		}
	} else {
		ms, err := s.query(r.w, ns, q, nil, int(skip), int(limit))
		if err != nil {
			return nil, err
		}
		n = len(ms)
	}
	return bson.D{{Key: "n", Value: int32(n)}}, nil
}

func (s *Server) cmdDistinct(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	kv, ok := r.arg("key")
	key, ok2 := kv.StringValueOK()
	if !ok || !ok2 {
		return nil, badValue("distinct needs a key")
	}
	q, err := r.docArg("query")
	if err != nil {
		return nil, err
	}
	ms, err := s.query(r.w, ns, q, nil, 0, 0)
	if err != nil {
		return nil, err
	}
	var vals []bsoncore.Value
	for _, m := range ms {
		var c candidates
		collect(bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: m.doc}, strings.Split(key, "."), &c, false)
		for _, w := range c.whole {
			items := []bsoncore.Value{w}
			if w.Type == bsoncore.TypeArray {
				items, _ = bsoncore.Document(w.Data).Values()
			}
			for _, it := range items {
				dup := false
				for _, x := range vals {
					if valuesEqual(x, it) {
						dup = true
						break
					}
				}
				if !dup {
					vals = append(vals, it)
				}
			}
		}
	}
	slices.SortFunc(vals, compareValues)
	out := bson.A{}
	for _, v := range vals {
		out = append(out, toGo(v))
	}
	return bson.D{{Key: "values", Value: out}}, nil
}
