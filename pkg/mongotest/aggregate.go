package mongotest

import (
	"slices"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

func unrecognizedStage(name string) *cmdError {
	return newError(40324, "Unrecognized pipeline stage name: '%s'", name)
}

func init() { codeNames[40324] = "Location40324"; codeNames[40415] = "Location40415" }

// stage is one parsed pipeline stage.
type stage struct {
	name string
	arg  bsoncore.Value
}

func parsePipeline(v bsoncore.Value) ([]stage, error) {
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, newError(codeTypeMismatch, "'pipeline' option must be specified as an array")
	}
	vals, _ := arr.Values()
	out := make([]stage, 0, len(vals))
	for _, sv := range vals {
		d, ok := sv.DocumentOK()
		if !ok {
			return nil, newError(codeTypeMismatch, "Each element of the 'pipeline' array must be an object")
		}
		elems, _ := d.Elements()
		if len(elems) != 1 {
			return nil, newError(40323, "A pipeline stage specification object must contain exactly one field.")
		}
		out = append(out, stage{name: elems[0].Key(), arg: elems[0].Value()})
	}
	return out, nil
}

func (s *Server) cmdAggregate(r *request) (bson.D, error) {
	target := r.body.Index(0).Value()
	pv, ok := r.arg("pipeline")
	if !ok {
		return nil, newError(codeFailedToParse, "required parameter 'pipeline' is missing")
	}
	stages, err := parsePipeline(pv)
	if err != nil {
		return nil, err
	}
	batchSize := -1
	if cd, err := r.docArg("cursor"); err == nil && cd != nil {
		if bs, ok := cd.Lookup("batchSize").AsInt64OK(); ok {
			batchSize = int(bs)
		}
	} else if err != nil {
		return nil, err
	}
	if len(stages) > 0 && stages[0].name == "$changeStream" {
		return s.aggregateChangeStream(r, target, stages, batchSize)
	}
	coll, ok := target.StringValueOK()
	if !ok {
		name := "(none)"
		if len(stages) > 0 {
			name = stages[0].name
		}
		return nil, newError(codeInvalidNamespace, "mongotest: database-level aggregate supports only $changeStream, not %s", name)
	}
	for i, st := range stages {
		if st.name == "$changeStream" && i > 0 {
			return nil, newError(40602, "$changeStream is only valid as the first stage in a pipeline")
		}
	}
	ns := nsKey{r.db, coll}
	// A leading $match becomes the query so that _id lookups stay fast.
	var filter bsoncore.Document
	if len(stages) > 0 && stages[0].name == "$match" {
		filter, _ = stages[0].arg.DocumentOK()
		stages = stages[1:]
	}
	ms, err := s.query(r.w, ns, filter, nil, 0, 0)
	if err != nil {
		return nil, err
	}
	docs := make([]bsoncore.Document, len(ms))
	for i, m := range ms {
		docs[i] = m.doc
	}
	for _, st := range stages {
		if docs, err = applyStage(docs, st); err != nil {
			return nil, err
		}
	}
	bs := batchSize
	if bs < 0 {
		bs = defaultBatch
	}
	if bs == 0 {
		var id int64
		if len(docs) > 0 {
			id = s.newCursorID()
			s.cursors[id] = &findCursor{id: id, ns: ns.String(), docs: docs, lastUse: time.Now()}
		}
		return bson.D{{Key: "cursor", Value: bson.D{
			{Key: "firstBatch", Value: bson.A{}}, {Key: "id", Value: id}, {Key: "ns", Value: ns.String()},
		}}}, nil
	}
	return s.cursorReply(ns.String(), docs, bs, false), nil
}

// applyStage runs one non-$changeStream stage over docs.
func applyStage(docs []bsoncore.Document, st stage) ([]bsoncore.Document, error) {
	switch st.name {
	case "$match":
		d, ok := st.arg.DocumentOK()
		if !ok {
			return nil, badValue("$match must be an object")
		}
		m, err := compileFilter(d)
		if err != nil {
			return nil, err
		}
		out := docs[:0:0]
		for _, doc := range docs {
			if m.match(doc) {
				out = append(out, doc)
			}
		}
		return out, nil
	case "$sort":
		d, ok := st.arg.DocumentOK()
		if !ok {
			return nil, badValue("$sort must be an object")
		}
		keys, err := parseSort(d)
		if err != nil {
			return nil, err
		}
		ms := make([]match, len(docs))
		for i, doc := range docs {
			ms[i] = match{doc: doc}
		}
		sortMatches(ms, keys)
		out := make([]bsoncore.Document, len(ms))
		for i, m := range ms {
			out[i] = m.doc
		}
		return out, nil
	case "$skip":
		n, ok := st.arg.AsInt64OK()
		if !ok || n < 0 {
			return nil, badValue("invalid argument to $skip stage")
		}
		if int(n) >= len(docs) {
			return nil, nil
		}
		return docs[n:], nil
	case "$limit":
		n, ok := st.arg.AsInt64OK()
		if !ok || n <= 0 {
			return nil, badValue("the limit must be positive")
		}
		if int(n) < len(docs) {
			return docs[:n], nil
		}
		return docs, nil
	case "$project":
		d, ok := st.arg.DocumentOK()
		if !ok {
			return nil, badValue("$project specification must be an object")
		}
		out := make([]bsoncore.Document, len(docs))
		for i, doc := range docs {
			out[i] = project(doc, d)
		}
		return out, nil
	case "$count":
		name, ok := st.arg.StringValueOK()
		if !ok || name == "" {
			return nil, badValue("the count field must be a non-empty string")
		}
		if len(docs) == 0 {
			return nil, nil
		}
		return []bsoncore.Document{bsoncore.BuildDocument(nil, bsoncore.AppendInt32Element(nil, name, int32(len(docs))))}, nil
	case "$group":
		d, ok := st.arg.DocumentOK()
		if !ok {
			return nil, badValue("a group's fields must be specified in an object")
		}
		return group(docs, d)
	}
	return nil, unrecognizedStage(st.name)
}

// evalExpr evaluates a field path ("$a.b") or a constant.
func evalExpr(doc bsoncore.Document, e bsoncore.Value) (bsoncore.Value, bool) {
	if s, ok := e.StringValueOK(); ok && strings.HasPrefix(s, "$") {
		v, err := doc.LookupErr(strings.Split(s[1:], ".")...)
		if err != nil {
			return bsoncore.Value{}, false
		}
		return v, true
	}
	return e, true
}

type accumulator struct {
	name, op string
	expr     bsoncore.Value
}

type groupState struct {
	key   bsoncore.Value
	vals  []any
	seen  []bool
	count []int
}

// group implements $group with _id null/constant/field path and the
// accumulators $sum, $count, $min, $max, $first, $last, $avg, $push.
func group(docs []bsoncore.Document, spec bsoncore.Document) ([]bsoncore.Document, error) {
	elems, _ := spec.Elements()
	var idExpr bsoncore.Value
	hasID := false
	var accs []accumulator
	for _, e := range elems {
		if e.Key() == "_id" {
			idExpr, hasID = e.Value(), true
			continue
		}
		ad, ok := e.Value().DocumentOK()
		if !ok {
			return nil, newError(40234, "The field '%s' must be an accumulator object", e.Key())
		}
		ae, _ := ad.Elements()
		if len(ae) != 1 {
			return nil, newError(40238, "The field '%s' must specify one accumulator", e.Key())
		}
		switch ae[0].Key() {
		case "$sum", "$count", "$min", "$max", "$first", "$last", "$avg", "$push":
		default:
			return nil, newError(15952, "mongotest: unsupported accumulator %s", ae[0].Key())
		}
		accs = append(accs, accumulator{name: e.Key(), op: ae[0].Key(), expr: ae[0].Value()})
	}
	if !hasID {
		return nil, newError(15955, "a group specification must include an _id")
	}
	if _, isDoc := idExpr.DocumentOK(); isDoc {
		return nil, newError(15952, "mongotest: $group with a compound _id is not supported")
	}
	var groups []*groupState
	index := map[string]*groupState{}
	for _, doc := range docs {
		k, ok := evalExpr(doc, idExpr)
		if !ok {
			k = bsoncore.Value{Type: bsoncore.TypeNull}
		}
		ks := idKey(k)
		if k.Type == bsoncore.TypeNull || k.Type == bsoncore.TypeUndefined {
			ks = "null"
		}
		g := index[ks]
		if g == nil {
			g = &groupState{key: k, vals: make([]any, len(accs)), seen: make([]bool, len(accs)), count: make([]int, len(accs))}
			index[ks] = g
			groups = append(groups, g)
		}
		for i, a := range accs {
			var v bsoncore.Value
			var ok bool
			if a.op == "$count" {
				v, ok = coreOf(int32(1)), true
			} else {
				v, ok = evalExpr(doc, a.expr)
			}
			switch a.op {
			case "$sum", "$count", "$avg":
				if !ok || !isNumber(v.Type) {
					continue
				}
				if !g.seen[i] {
					g.vals[i], g.seen[i] = toGo(v), true
				} else {
					r, err := arith(coreOf(g.vals[i]), v, '+')
					if err != nil {
						r = floatOf(coreOf(g.vals[i])) + floatOf(v)
					}
					g.vals[i] = r
				}
				g.count[i]++
			case "$min", "$max":
				if !ok || v.Type == bsoncore.TypeNull {
					continue
				}
				if !g.seen[i] {
					g.vals[i], g.seen[i] = toGo(v), true
				} else {
					c := compareValues(v, coreOf(g.vals[i]))
					if (a.op == "$min" && c < 0) || (a.op == "$max" && c > 0) {
						g.vals[i] = toGo(v)
					}
				}
			case "$first":
				if !g.seen[i] {
					g.seen[i] = true
					if ok {
						g.vals[i] = toGo(v)
					}
				}
			case "$last":
				g.seen[i] = true
				g.vals[i] = nil
				if ok {
					g.vals[i] = toGo(v)
				}
			case "$push":
				if !g.seen[i] {
					g.vals[i], g.seen[i] = bson.A{}, true
				}
				if ok {
					g.vals[i] = append(g.vals[i].(bson.A), toGo(v))
				}
			}
		}
	}
	out := make([]bsoncore.Document, 0, len(groups))
	for _, g := range groups {
		d := bson.D{{Key: "_id", Value: toGo(g.key)}}
		if g.key.Type == 0 {
			d[0].Value = nil
		}
		for i, a := range accs {
			v := g.vals[i]
			switch a.op {
			case "$sum", "$count":
				if !g.seen[i] {
					v = int32(0)
				}
			case "$avg":
				if g.seen[i] {
					v = floatOf(coreOf(v)) / float64(g.count[i])
				}
			}
			d = append(d, bson.E{Key: a.name, Value: v})
		}
		b, err := bson.Marshal(d)
		if err != nil {
			return nil, badValue("cannot encode group result: %v", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// ---- change streams ----

func (s *Server) aggregateChangeStream(r *request, target bsoncore.Value, stages []stage, batchSize int) (bson.D, error) {
	if r.txn != nil {
		return nil, newError(263, "Operation not permitted in transaction :: caused by :: Cannot run aggregate with $changeStream in a multi-document transaction.")
	}
	if err := s.changeStreamsSupported(); err != nil { // topology.go
		return nil, err
	}
	spec, ok := stages[0].arg.DocumentOK()
	if !ok {
		return nil, badValue("the $changeStream stage specification must be an object")
	}
	o, allForCluster, err := parseChangeStreamStage(spec)
	if err != nil {
		return nil, err
	}
	c := &csCursor{db: r.db, fullDoc: o.fullDoc, before: o.before}
	if coll, ok := target.StringValueOK(); ok {
		c.coll = coll
		c.ns = r.db + "." + coll
		if allForCluster {
			return nil, badValue("allChangesForCluster is only allowed on admin with aggregate: 1")
		}
	} else {
		if n, ok := target.AsInt64OK(); !ok || n != 1 {
			return nil, badValue("aggregate target must be a collection name or 1")
		}
		c.ns = r.db + ".$cmd.aggregate"
		switch {
		case r.db == "admin" && allForCluster:
			c.cluster = true
		case r.db == "admin":
			return nil, newError(codeInvalidNamespace, "$changeStream may not be opened on the internal admin database")
		case allForCluster:
			return nil, badValue("allChangesForCluster may only be used on admin")
		case r.db == "local" || r.db == "config":
			return nil, newError(codeInvalidNamespace, "$changeStream may not be opened on the internal %s database", r.db)
		}
	}
	for _, st := range stages[1:] {
		switch st.name {
		case "$match":
			d, ok := st.arg.DocumentOK()
			if !ok {
				return nil, badValue("$match must be an object")
			}
			m, err := compileFilter(d)
			if err != nil {
				return nil, err
			}
			c.stages = append(c.stages, csStage{m: m})
		case "$project":
			d, ok := st.arg.DocumentOK()
			if !ok {
				return nil, badValue("$project specification must be an object")
			}
			c.stages = append(c.stages, csStage{p: d})
		case "$addFields", "$set", "$unset", "$replaceRoot", "$replaceWith", "$redact":
			// Accepted and ignored: events are returned whole.
		case "$changeStream":
			return nil, newError(40602, "$changeStream is only valid as the first stage in a pipeline")
		case "$changeStreamSplitLargeEvent": // split.go
			if err := s.parseSplitStage(st, stages); err != nil {
				return nil, err
			}
			c.split = true
		default:
			return nil, newError(codeBadValue, "Stage %s is not permitted in a $changeStream pipeline", st.name)
		}
	}
	if err := s.openChangeStream(c, o); err != nil {
		return nil, err
	}
	var b csBatch
	if batchSize == 0 {
		b.pbrt = c.last.doc()
	} else {
		limit := batchSize
		if limit < 0 {
			limit = defaultBatch
		}
		if b, err = s.scanChangeStream(c, limit); err != nil {
			return nil, err
		}
	}
	var id int64
	if !b.closed {
		id = s.newCursorID()
		c.id = id
		c.lastUse = time.Now()
		s.cursors[id] = c
	}
	return csReply("firstBatch", b, id, c.ns), nil
}

func csReply(field string, b csBatch, id int64, ns string) bson.D {
	return bson.D{{Key: "cursor", Value: bson.D{
		{Key: field, Value: rawSlice(b.events)},
		{Key: "postBatchResumeToken", Value: bson.Raw(b.pbrt)},
		{Key: "id", Value: id},
		{Key: "ns", Value: ns},
	}}}
}

// changeStreamGetMore returns the next events of c, waiting up to wait for
// at least one. It is called with s.mu held and releases it while waiting.
func (s *Server) changeStreamGetMore(r *request, c *csCursor, batchSize int, wait time.Duration) (bson.D, error) {
	if c.inUse {
		return nil, newError(codeCursorNotFound, "cursor id %d is already in use", c.id)
	}
	c.inUse = true
	defer func() { c.inUse = false }()
	deadline := time.Now().Add(wait)
	for {
		b, err := s.scanChangeStream(c, batchSize)
		if err != nil {
			delete(s.cursors, c.id)
			return nil, err
		}
		remaining := time.Until(deadline)
		if len(b.events) > 0 || b.closed || remaining <= 0 {
			id := c.id
			if b.closed {
				delete(s.cursors, c.id)
				id = 0
			}
			return csReply("nextBatch", b, id, c.ns), nil
		}
		ch := s.notify
		s.mu.Unlock()
		t := time.NewTimer(remaining)
		select {
		case <-ch:
		case <-t.C:
		case <-s.closing:
		case <-r.c.done:
		}
		t.Stop()
		s.mu.Lock()
		select {
		case <-s.closing:
			return nil, newError(91, "The server is in quiesce mode and will shut down")
		case <-r.c.done:
			return nil, newError(codeHostUnreachable, "connection closed")
		default:
		}
		if s.cursors[c.id] != any(c) {
			return nil, newError(codeCursorNotFound, "cursor id %d was killed", c.id)
		}
	}
}

// ---- collections and databases ----

func (s *Server) cmdListCollections(r *request) (bson.D, error) {
	filter, err := r.docArg("filter")
	if err != nil {
		return nil, err
	}
	m, err := compileFilter(filter)
	if err != nil {
		return nil, err
	}
	nameOnly := r.boolArg("nameOnly")
	var docs []bsoncore.Document
	add := func(name string, uuid []byte) {
		var d bson.D
		if nameOnly {
			d = bson.D{{Key: "name", Value: name}, {Key: "type", Value: "collection"}}
		} else {
			d = bson.D{
				{Key: "name", Value: name},
				{Key: "type", Value: "collection"},
				{Key: "options", Value: s.collectionOptions(uuid)}, // images.go
				{Key: "info", Value: bson.D{{Key: "readOnly", Value: false}, {Key: "uuid", Value: bson.Binary{Subtype: 4, Data: uuid}}}},
				{Key: "idIndex", Value: bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: bson.D{{Key: "_id", Value: int32(1)}}}, {Key: "name", Value: "_id_"}}},
			}
		}
		b, _ := bson.Marshal(d)
		if m.match(b) {
			docs = append(docs, b)
		}
	}
	if r.db == "local" {
		add("oplog.rs", make([]byte, 16))
	}
	if d := s.dbs[r.db]; d != nil {
		names := make([]string, 0, len(d.colls))
		for n := range d.colls {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			add(n, d.colls[n].uuid)
		}
	}
	bs := -1
	if cd, _ := r.docArg("cursor"); cd != nil {
		if n, ok := cd.Lookup("batchSize").AsInt64OK(); ok {
			bs = int(n)
		}
	}
	if bs <= 0 {
		bs = len(docs) + 1
	}
	return s.cursorReply(r.db+".$cmd.listCollections", docs, bs, false), nil
}

func (s *Server) cmdListDatabases(r *request) (bson.D, error) {
	filter, err := r.docArg("filter")
	if err != nil {
		return nil, err
	}
	m, err := compileFilter(filter)
	if err != nil {
		return nil, err
	}
	nameOnly := r.boolArg("nameOnly")
	names := []string{"admin", "config", "local"}
	for n, d := range s.dbs {
		if len(d.colls) > 0 && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var dbs bson.A
	var total int64
	for _, n := range names {
		var size int64
		if d := s.dbs[n]; d != nil {
			for _, c := range d.colls {
				for _, rec := range c.docs {
					size += int64(len(rec.doc))
				}
			}
		}
		if n == "local" {
			size += int64(len(s.oplog)) * 100
		}
		size = (size + 4095) / 4096 * 4096
		var d bson.D
		if nameOnly {
			d = bson.D{{Key: "name", Value: n}}
		} else {
			d = bson.D{{Key: "name", Value: n}, {Key: "sizeOnDisk", Value: size}, {Key: "empty", Value: size == 0}}
		}
		b, _ := bson.Marshal(d)
		if !m.match(b) {
			continue
		}
		total += size
		dbs = append(dbs, bson.Raw(b))
	}
	if dbs == nil {
		dbs = bson.A{}
	}
	out := bson.D{{Key: "databases", Value: dbs}}
	if !nameOnly {
		out = append(out, bson.E{Key: "totalSize", Value: total}, bson.E{Key: "totalSizeMb", Value: total >> 20})
	}
	return out, nil
}

func (s *Server) cmdCreate(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	if err := checkWritable(ns); err != nil {
		return nil, err
	}
	if s.coll(ns) != nil {
		return nil, newError(codeNamespaceExists, "Collection %s already exists.", ns)
	}
	images, err := parseImagesOption(r) // images.go
	if err != nil {
		return nil, err
	}
	c, _ := s.ensureColl(ns)
	s.setImages(c.uuid, images)
	if ns.db != "local" {
		s.appendEntry(&oplogEntry{kind: opCreate, db: ns.db, coll: ns.coll, uuid: c.uuid}, s.nextTs())
		r.w.wrote = true
	}
	return bson.D{}, nil
}

// dropColl removes a collection and logs the drop. Caller holds s.mu.
func (s *Server) dropColl(ns nsKey) *collection {
	d := s.dbs[ns.db]
	if d == nil {
		return nil
	}
	c := d.colls[ns.coll]
	if c == nil {
		return nil
	}
	s.abortTxnsOn(func(x nsKey) bool { return x == ns }, "collection dropped")
	delete(d.colls, ns.coll)
	for k, l := range s.locks {
		if strings.HasPrefix(k, ns.db+"."+ns.coll+"\x00") {
			s.abortTxn(l, "collection dropped")
		}
	}
	if ns.db != "local" {
		s.appendEntry(&oplogEntry{kind: opDrop, db: ns.db, coll: ns.coll, uuid: c.uuid}, s.nextTs())
	}
	return c
}

func (s *Server) cmdDrop(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	if err := checkWritable(ns); err != nil {
		return nil, err
	}
	c := s.dropColl(ns)
	if c == nil {
		return bson.D{}, nil // MongoDB 7: dropping a missing collection succeeds
	}
	r.w.wrote = true
	if d := s.dbs[ns.db]; d != nil && len(d.colls) == 0 {
		delete(s.dbs, ns.db)
	}
	return bson.D{{Key: "nIndexesWas", Value: int32(len(c.indexes))}, {Key: "ns", Value: ns.String()}}, nil
}

func (s *Server) cmdDropDatabase(r *request) (bson.D, error) {
	if r.db == "local" || r.db == "admin" || r.db == "config" {
		return nil, newError(20, "Cannot drop '%s' database", r.db)
	}
	d := s.dbs[r.db]
	if d == nil {
		return bson.D{}, nil
	}
	names := make([]string, 0, len(d.colls))
	for n := range d.colls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.dropColl(nsKey{r.db, n})
	}
	delete(s.dbs, r.db)
	s.appendEntry(&oplogEntry{kind: opDropDatabase, db: r.db}, s.nextTs())
	r.w.wrote = true
	return bson.D{{Key: "dropped", Value: r.db}}, nil
}

func (s *Server) cmdCreateIndexes(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	if err := checkWritable(ns); err != nil {
		return nil, err
	}
	specs, err := r.docs("indexes")
	if err != nil {
		return nil, err
	}
	c, created := s.ensureColl(ns)
	before := len(c.indexes)
	for _, sp := range specs {
		name, _ := sp.Lookup("name").StringValueOK()
		exists := false
		for _, ix := range c.indexes {
			if n, _ := ix.Lookup("name").StringValueOK(); n == name {
				exists = true
			}
		}
		if !exists {
			c.indexes = append(c.indexes, append(bsoncore.Document(nil), sp...))
		}
	}
	return bson.D{
		{Key: "numIndexesBefore", Value: int32(before)},
		{Key: "numIndexesAfter", Value: int32(len(c.indexes))},
		{Key: "createdCollectionAutomatically", Value: created},
	}, nil
}

func (s *Server) cmdListIndexes(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	c := s.coll(ns)
	if c == nil {
		return nil, newError(codeNamespaceNotFound, "ns does not exist: %s", ns)
	}
	return s.cursorReply(ns.String(), slices.Clone(c.indexes), len(c.indexes)+1, false), nil
}

func (s *Server) cmdDropIndexes(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	c := s.coll(ns)
	if c == nil {
		return nil, newError(codeNamespaceNotFound, "ns not found %s", ns)
	}
	before := len(c.indexes)
	v, _ := r.arg("index")
	name, _ := v.StringValueOK()
	keep := c.indexes[:1]
	if name != "*" {
		for _, ix := range c.indexes[1:] {
			n, _ := ix.Lookup("name").StringValueOK()
			if n != name {
				keep = append(keep, ix)
			}
		}
	}
	c.indexes = keep
	return bson.D{{Key: "nIndexesWas", Value: int32(before)}}, nil
}

// ---- transactions ----

func (s *Server) cmdCommitTransaction(r *request) (bson.D, error) {
	if r.txn.status == txnActive {
		s.commitTxn(r.txn)
	}
	return bson.D{}, nil
}

func (s *Server) cmdAbortTransaction(r *request) (bson.D, error) {
	s.abortTxn(r.txn, "aborted by the client")
	return bson.D{}, nil
}
