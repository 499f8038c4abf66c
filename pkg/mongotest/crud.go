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
