package mongotest

import (
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

// applyStage runs one non-$changeStream stage over docs. It is long because
// it is a table of the stages, one short case each ($group's work is in group).
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
	idExpr, accs, err := parseGroupSpec(spec)
	if err != nil {
		return nil, err
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
			g.accumulate(i, a, doc)
		}
	}
	out := make([]bsoncore.Document, 0, len(groups))
	for _, g := range groups {
		b, err := g.result(accs)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// parseGroupSpec splits a $group specification into its _id expression and
// its accumulators, refusing what the emulator does not implement (other
// accumulators, a compound _id) with an error rather than a wrong answer.
func parseGroupSpec(spec bsoncore.Document) (bsoncore.Value, []accumulator, error) {
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
			return bsoncore.Value{}, nil, newError(40234, "The field '%s' must be an accumulator object", e.Key())
		}
		ae, _ := ad.Elements()
		if len(ae) != 1 {
			return bsoncore.Value{}, nil, newError(40238, "The field '%s' must specify one accumulator", e.Key())
		}
		switch ae[0].Key() {
		case "$sum", "$count", "$min", "$max", "$first", "$last", "$avg", "$push":
		default:
			return bsoncore.Value{}, nil, newError(15952, "mongotest: unsupported accumulator %s", ae[0].Key())
		}
		accs = append(accs, accumulator{name: e.Key(), op: ae[0].Key(), expr: ae[0].Value()})
	}
	if !hasID {
		return bsoncore.Value{}, nil, newError(15955, "a group specification must include an _id")
	}
	if _, isDoc := idExpr.DocumentOK(); isDoc {
		return bsoncore.Value{}, nil, newError(15952, "mongotest: $group with a compound _id is not supported")
	}
	return idExpr, accs, nil
}

// accumulate folds doc into accumulator i of the group. Like mongod, $sum
// and $avg skip non-numbers and $min/$max skip missing and null values;
// $avg keeps the running sum in vals and the count of summed values in
// count.
func (g *groupState) accumulate(i int, a accumulator, doc bsoncore.Document) {
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
			return
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
			return
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

// result renders the group's output document: a $sum or $count that saw no
// number is 0 and $avg divides the running sum by its count at the end.
func (g *groupState) result(accs []accumulator) (bsoncore.Document, error) {
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
	return b, nil
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
