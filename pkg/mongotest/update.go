package mongotest

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

const codePathNotViable int32 = 28

// updateSpec is a parsed update: either a replacement document or a list of
// operator applications.
type updateSpec struct {
	replacement bsoncore.Document
	ops         []updOp
}

type updOp struct {
	op   string
	path []string
	arg  bsoncore.Value
}

func (u *updateSpec) isReplacement() bool { return u.ops == nil }

// parseUpdate parses the u field of an update statement.
func parseUpdate(v bsoncore.Value) (*updateSpec, error) {
	if v.Type == bsoncore.TypeArray {
		return nil, newError(codeFailedToParse, "mongotest: pipeline-style updates are not supported")
	}
	d, ok := v.DocumentOK()
	if !ok {
		return nil, newError(codeFailedToParse, "update must be a document")
	}
	elems, err := d.Elements()
	if err != nil {
		return nil, badValue("invalid update: %v", err)
	}
	if len(elems) == 0 || !strings.HasPrefix(elems[0].Key(), "$") {
		for _, e := range elems {
			if strings.HasPrefix(e.Key(), "$") {
				return nil, badValue("The dollar ($) prefixed field '%s' in '%s' is not allowed in the context of an update's replacement document.", e.Key(), e.Key())
			}
		}
		return &updateSpec{replacement: d}, nil
	}
	u := &updateSpec{ops: []updOp{}}
	var all [][]string
	for _, e := range elems {
		op := e.Key()
		switch op {
		case "$set", "$unset", "$inc", "$mul", "$min", "$max", "$setOnInsert", "$currentDate",
			"$push", "$addToSet", "$pull", "$pop", "$rename":
		default:
			if strings.HasPrefix(op, "$") {
				return nil, newError(codeFailedToParse, "Unknown modifier: %s. Expected a valid update modifier or pipeline-style update specified as an array", op)
			}
			return nil, newError(codeFailedToParse, "The update document mixes operators and fields ('%s')", op)
		}
		args, ok := e.Value().DocumentOK()
		if !ok {
			return nil, newError(codeFailedToParse, "Modifiers operate on fields but we found type %s instead. For example: {$mod: {<field>: ...}} not {%s: %s}", e.Value().Type, op, e.Value())
		}
		fields, _ := args.Elements()
		for _, f := range fields {
			if f.Key() == "" {
				return nil, newError(codeFailedToParse, "An empty update path is not valid.")
			}
			path := strings.Split(f.Key(), ".")
			u.ops = append(u.ops, updOp{op: op, path: path, arg: f.Value()})
			all = append(all, path)
			if op == "$rename" {
				to, ok := f.Value().StringValueOK()
				if !ok {
					return nil, badValue("The 'to' field for $rename must be a string: %s", f.Value())
				}
				all = append(all, strings.Split(to, "."))
			}
		}
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if pathPrefix(all[i], all[j]) || pathPrefix(all[j], all[i]) {
				a := strings.Join(all[i], ".")
				return nil, newError(codeConflictingUpdate, "Updating the path '%s' would create a conflict at '%s'", strings.Join(all[j], "."), a)
			}
		}
	}
	return u, nil
}

func pathPrefix(a, b []string) bool {
	if len(a) > len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// updateResult is the outcome of applying an update to one document.
type updateResult struct {
	doc      bsoncore.Document
	desc     bsoncore.Document // updateDescription (operator updates)
	changed  bool
	replaced bool
}

// applyUpdate applies u to old (nil old means an upsert insert of seed).
func applyUpdate(u *updateSpec, old bsoncore.Document, inserting bool) (updateResult, error) {
	oldID, hadID := docID(old)
	if u.isReplacement() {
		var out []byte
		idx, out := bsoncore.AppendDocumentStart(out)
		newID, hasNewID := docID(u.replacement)
		switch {
		case hasNewID && hadID && !sameValue(newID, oldID):
			return updateResult{}, immutableID(newID)
		case hadID:
			out = bsoncore.AppendValueElement(out, "_id", oldID)
		case hasNewID:
			out = bsoncore.AppendValueElement(out, "_id", newID)
		}
		elems, _ := u.replacement.Elements()
		for _, e := range elems {
			if e.Key() != "_id" {
				out = append(out, e...)
			}
		}
		out, _ = bsoncore.AppendDocumentEnd(out, idx)
		return updateResult{doc: out, changed: !bytes.Equal(out, old), replaced: true}, nil
	}
	var d bson.D
	if len(old) > 0 {
		if err := bson.Unmarshal(old, &d); err != nil {
			return updateResult{}, err
		}
	}
	var setPaths, removed []string
	report := func(p string) { setPaths = append(setPaths, p) }
	for _, op := range u.ops {
		var err error
		d, err = applyOp(d, op, inserting, report, &removed)
		if err != nil {
			return updateResult{}, err
		}
	}
	newDoc, err := bson.Marshal(d)
	if err != nil {
		return updateResult{}, badValue("cannot encode updated document: %v", err)
	}
	nd := bsoncore.Document(newDoc)
	if hadID {
		if nid, ok := docID(nd); !ok || !sameValue(nid, oldID) {
			if !ok {
				return updateResult{}, newError(codeImmutableField, "Performing an update on the path '_id' would modify the immutable field '_id'")
			}
			return updateResult{}, immutableID(nid)
		}
	}
	res := updateResult{doc: nd, changed: !bytes.Equal(nd, old)}
	if res.changed && !inserting {
		res.desc = buildUpdateDescription(old, nd, setPaths, removed)
	}
	return res, nil
}

func immutableID(v bsoncore.Value) *cmdError {
	return newError(codeImmutableField, "After applying the update, the (immutable) field '_id' was found to have been altered to _id: %s", v)
}

func sameValue(a, b bsoncore.Value) bool {
	return a.Type == b.Type && bytes.Equal(a.Data, b.Data)
}

// buildUpdateDescription renders {updatedFields, removedFields,
// truncatedArrays}, listing only paths whose value really changed.
func buildUpdateDescription(old, nd bsoncore.Document, setPaths, removed []string) bsoncore.Document {
	seen := map[string]bool{}
	idx, upd := bsoncore.AppendDocumentStart(nil)
	for _, p := range setPaths {
		if seen[p] {
			continue
		}
		seen[p] = true
		nv, err := nd.LookupErr(strings.Split(p, ".")...)
		if err != nil {
			continue
		}
		if ov, err := old.LookupErr(strings.Split(p, ".")...); err == nil && sameValue(ov, nv) {
			continue
		}
		upd = bsoncore.AppendValueElement(upd, p, nv)
	}
	upd, _ = bsoncore.AppendDocumentEnd(upd, idx)
	aidx, rem := bsoncore.AppendArrayStart(nil)
	n := 0
	for _, p := range removed {
		if seen["-"+p] {
			continue
		}
		seen["-"+p] = true
		rem = bsoncore.AppendStringElement(rem, strconv.Itoa(n), p)
		n++
	}
	rem, _ = bsoncore.AppendArrayEnd(rem, aidx)
	tidx, tr := bsoncore.AppendArrayStart(nil)
	tr, _ = bsoncore.AppendArrayEnd(tr, tidx)
	return bsoncore.BuildDocument(nil,
		bsoncore.AppendDocumentElement(nil, "updatedFields", upd),
		bsoncore.AppendArrayElement(nil, "removedFields", rem),
		bsoncore.AppendArrayElement(nil, "truncatedArrays", tr),
	)
}

// toGo converts a BSON value to the Go representation used for bson.D
// manipulation (documents become bson.D, arrays bson.A).
func toGo(v bsoncore.Value) any {
	doc := bsoncore.BuildDocument(nil, bsoncore.AppendValueElement(nil, "v", v))
	var d bson.D
	if err := bson.Unmarshal(doc, &d); err != nil || len(d) != 1 {
		return nil
	}
	return d[0].Value
}

// coreOf converts a Go value back to a BSON value.
func coreOf(x any) bsoncore.Value {
	t, b, err := bson.MarshalValue(x)
	if err != nil {
		return bsoncore.Value{Type: bsoncore.TypeNull}
	}
	return bsoncore.Value{Type: bsoncore.Type(t), Data: b}
}

// reportedPath is the path MongoDB's update diff reports when path is set in
// d: the path down to the first component that did not exist yet.
func reportedPath(d bson.D, path []string) string {
	var cur any = d
	for i, comp := range path {
		v, ok := child(cur, comp)
		if !ok {
			return strings.Join(path[:i+1], ".")
		}
		cur = v
	}
	return strings.Join(path, ".")
}

func child(cont any, key string) (any, bool) {
	switch c := cont.(type) {
	case bson.D:
		for _, e := range c {
			if e.Key == key {
				return e.Value, true
			}
		}
	case bson.A:
		i, err := strconv.Atoi(key)
		if err == nil && i >= 0 && i < len(c) {
			return c[i], true
		}
	}
	return nil, false
}

func getPath(d bson.D, path []string) (any, bool) {
	var cur any = d
	for _, comp := range path {
		v, ok := child(cur, comp)
		if !ok {
			return nil, false
		}
		cur = v
	}
	return cur, true
}

// setIn sets path in cont to val, creating intermediate documents, and
// returns the (possibly reallocated) container.
func setIn(cont any, path []string, val any, full string) (any, error) {
	switch c := cont.(type) {
	case bson.D:
		for i := range c {
			if c[i].Key == path[0] {
				if len(path) == 1 {
					c[i].Value = val
					return c, nil
				}
				nv, err := setIn(c[i].Value, path[1:], val, full)
				if err != nil {
					return nil, err
				}
				c[i].Value = nv
				return c, nil
			}
		}
		if len(path) == 1 {
			return append(c, bson.E{Key: path[0], Value: val}), nil
		}
		nv, err := setIn(bson.D{}, path[1:], val, full)
		if err != nil {
			return nil, err
		}
		return append(c, bson.E{Key: path[0], Value: nv}), nil
	case bson.A:
		idx, err := strconv.Atoi(path[0])
		if err != nil || idx < 0 {
			return nil, newError(codePathNotViable, "Cannot create field '%s' in element {%s: %v}", path[0], full, c)
		}
		if idx > 1500000 {
			return nil, badValue("can't backfill more than 1500000 elements")
		}
		for len(c) <= idx {
			c = append(c, nil)
		}
		if len(path) == 1 {
			c[idx] = val
			return c, nil
		}
		elem := c[idx]
		if elem == nil {
			elem = bson.D{}
		}
		nv, err := setIn(elem, path[1:], val, full)
		if err != nil {
			return nil, err
		}
		c[idx] = nv
		return c, nil
	}
	return nil, newError(codePathNotViable, "Cannot create field '%s' in element {%s: %v}", path[0], full, cont)
}

// unsetIn removes path from cont (array elements become null, as in
// MongoDB). It reports whether something was removed.
func unsetIn(cont any, path []string) (any, bool) {
	switch c := cont.(type) {
	case bson.D:
		for i := range c {
			if c[i].Key != path[0] {
				continue
			}
			if len(path) == 1 {
				return append(c[:i:i], c[i+1:]...), true
			}
			nv, ok := unsetIn(c[i].Value, path[1:])
			if ok {
				c[i].Value = nv
			}
			return c, ok
		}
	case bson.A:
		idx, err := strconv.Atoi(path[0])
		if err != nil || idx < 0 || idx >= len(c) {
			return c, false
		}
		if len(path) == 1 {
			c[idx] = nil
			return c, true
		}
		nv, ok := unsetIn(c[idx], path[1:])
		if ok {
			c[idx] = nv
		}
		return c, ok
	}
	return cont, false
}

func setPath(d bson.D, path []string, val any) (bson.D, error) {
	nv, err := setIn(d, path, val, strings.Join(path, "."))
	if err != nil {
		return nil, err
	}
	return nv.(bson.D), nil
}

// applyOp applies one operator to one path.
func applyOp(d bson.D, op updOp, inserting bool, report func(string), removed *[]string) (bson.D, error) {
	full := strings.Join(op.path, ".")
	if op.path[0] == "_id" && len(op.path) > 1 {
		return nil, newError(codeImmutableField, "Performing an update on the path '%s' would modify the immutable field '_id'", full)
	}
	cur, exists := getPath(d, op.path)
	set := func(v any) (bson.D, error) {
		report(reportedPath(d, op.path))
		return setPath(d, op.path, v)
	}
	switch op.op {
	case "$set":
		return set(toGo(op.arg))
	case "$setOnInsert":
		if !inserting {
			return d, nil
		}
		return set(toGo(op.arg))
	case "$unset":
		nd, ok := unsetIn(d, op.path)
		if ok {
			*removed = append(*removed, full)
		}
		return nd.(bson.D), nil
	case "$inc", "$mul":
		if !isNumber(op.arg.Type) {
			return nil, newError(codeTypeMismatch, "Cannot %s with non-numeric argument: {%s: %s}", map[string]string{"$inc": "increment", "$mul": "multiply"}[op.op], full, op.arg)
		}
		if !exists {
			if op.op == "$inc" {
				return set(toGo(op.arg))
			}
			zero, err := arith(coreOf(int32(0)), op.arg, '*')
			if err != nil {
				return nil, err
			}
			return set(zero)
		}
		cv := coreOf(cur)
		if !isNumber(cv.Type) {
			return nil, newError(codeTypeMismatch, "Cannot apply %s to a value of non-numeric type. {_id: %v} has the field '%s' of non-numeric type %s", op.op, idOfD(d), full, typeName(cv.Type))
		}
		sym := byte('+')
		if op.op == "$mul" {
			sym = '*'
		}
		r, err := arith(cv, op.arg, sym)
		if err != nil {
			return nil, err
		}
		return set(r)
	case "$min", "$max":
		if exists {
			c := compareValues(op.arg, coreOf(cur))
			if (op.op == "$min" && c >= 0) || (op.op == "$max" && c <= 0) {
				return d, nil
			}
		}
		return set(toGo(op.arg))
	case "$currentDate":
		now := time.Now()
		if ad, ok := op.arg.DocumentOK(); ok {
			if t, _ := ad.Lookup("$type").StringValueOK(); t == "timestamp" {
				return set(bson.Timestamp{T: uint32(now.Unix()), I: 1})
			}
		}
		return set(bson.NewDateTimeFromTime(now))
	case "$rename":
		to := strings.Split(op.arg.StringValue(), ".")
		if !exists {
			return d, nil
		}
		nd, _ := unsetIn(d, op.path)
		d = nd.(bson.D)
		*removed = append(*removed, full)
		report(reportedPath(d, to))
		return setPath(d, to, cur)
	case "$push", "$addToSet":
		var arr bson.A
		if exists {
			a, ok := cur.(bson.A)
			if !ok {
				return nil, badValue("The field '%s' must be an array but is of type %s in document {_id: %v}", full, typeName(coreOf(cur).Type), idOfD(d))
			}
			arr = append(bson.A{}, a...)
		}
		items, position, slice, err := pushArgs(op)
		if err != nil {
			return nil, err
		}
		if op.op == "$addToSet" {
			for _, it := range items {
				found := false
				for _, x := range arr {
					if valuesEqual(coreOf(x), coreOf(it)) {
						found = true
						break
					}
				}
				if !found {
					arr = append(arr, it)
				}
			}
		} else {
			pos := len(arr)
			if position != nil {
				pos = *position
				if pos < 0 {
					pos += len(arr)
					if pos < 0 {
						pos = 0
					}
				}
				if pos > len(arr) {
					pos = len(arr)
				}
			}
			arr = append(arr[:pos:pos], append(append(bson.A{}, items...), arr[pos:]...)...)
			if slice != nil {
				n := *slice
				switch {
				case n >= 0 && n < len(arr):
					arr = arr[:n]
				case n < 0 && -n < len(arr):
					arr = arr[len(arr)+n:]
				}
			}
		}
		old, _ := cur.(bson.A)
		if exists && op.op == "$push" && position == nil && slice == nil {
			// Appends are reported element by element, like MongoDB's diff.
			for i := len(old); i < len(arr); i++ {
				report(full + "." + strconv.Itoa(i))
			}
			return setPath(d, op.path, arr)
		}
		return set(arr)
	case "$pull":
		if !exists {
			return d, nil
		}
		a, ok := cur.(bson.A)
		if !ok {
			return nil, badValue("Cannot apply $pull to a non-array value")
		}
		keep, err := pullFilter(op.arg)
		if err != nil {
			return nil, err
		}
		out := bson.A{}
		for _, x := range a {
			if !keep(coreOf(x)) {
				out = append(out, x)
			}
		}
		return set(out)
	case "$pop":
		if !exists {
			return d, nil
		}
		a, ok := cur.(bson.A)
		if !ok {
			return nil, badValue("Path '%s' contains an element of non-array type '%s'", full, typeName(coreOf(cur).Type))
		}
		if len(a) == 0 {
			return d, nil
		}
		n, _ := op.arg.AsInt64OK()
		if n < 0 {
			a = append(bson.A{}, a[1:]...)
		} else {
			a = append(bson.A{}, a[:len(a)-1]...)
		}
		return set(a)
	}
	return nil, newError(codeFailedToParse, "Unknown modifier: %s", op.op)
}

func pushArgs(op updOp) (items []any, position, slice *int, err error) {
	if ad, ok := op.arg.DocumentOK(); ok {
		if each, err2 := ad.LookupErr("$each"); err2 == nil {
			arr, ok := each.ArrayOK()
			if !ok {
				return nil, nil, nil, badValue("The argument to $each in %s must be an array but it was of type: %s", op.op, each.Type)
			}
			vals, _ := arr.Values()
			for _, v := range vals {
				items = append(items, toGo(v))
			}
			if p, err2 := ad.LookupErr("$position"); err2 == nil {
				n, _ := p.AsInt64OK()
				x := int(n)
				position = &x
			}
			if s, err2 := ad.LookupErr("$slice"); err2 == nil {
				n, _ := s.AsInt64OK()
				x := int(n)
				slice = &x
			}
			if _, err2 := ad.LookupErr("$sort"); err2 == nil {
				return nil, nil, nil, newError(codeFailedToParse, "mongotest: $push with $sort is not supported")
			}
			return items, position, slice, nil
		}
	}
	return []any{toGo(op.arg)}, nil, nil, nil
}

// pullFilter returns the predicate selecting array elements removed by $pull.
func pullFilter(arg bsoncore.Value) (func(bsoncore.Value) bool, error) {
	if isOperatorDoc(arg) {
		ops, err := compileFieldOps(arg)
		if err != nil {
			return nil, err
		}
		return func(v bsoncore.Value) bool {
			c := candidates{vals: []bsoncore.Value{v}, whole: []bsoncore.Value{v}}
			for _, op := range ops {
				if !op.test(&c) {
					return false
				}
			}
			return true
		}, nil
	}
	if d, ok := arg.DocumentOK(); ok {
		m, err := compileFilter(d)
		if err != nil {
			return nil, err
		}
		return func(v bsoncore.Value) bool {
			ed, ok := v.DocumentOK()
			return ok && m.match(ed)
		}, nil
	}
	return func(v bsoncore.Value) bool { return valuesEqual(v, arg) }, nil
}

func idOfD(d bson.D) any {
	for _, e := range d {
		if e.Key == "_id" {
			return e.Value
		}
	}
	return nil
}

func typeName(t bsoncore.Type) string {
	for k, v := range typeAliases {
		if v == t {
			return k
		}
	}
	return t.String()
}

// arith computes a+b or a*b with MongoDB's type promotion: int32 op int32
// stays int32 unless it overflows (then int64), int64 overflow is an error,
// any double makes a double and any Decimal128 makes a Decimal128 (computed
// exactly with shopspring/decimal).
func arith(a, b bsoncore.Value, op byte) (any, error) {
	if a.Type == bsoncore.TypeDecimal128 || b.Type == bsoncore.TypeDecimal128 {
		da, err := decimalOf(a)
		if err != nil {
			return nil, err
		}
		db, err := decimalOf(b)
		if err != nil {
			return nil, err
		}
		var r decimal.Decimal
		if op == '+' {
			r = da.Add(db)
		} else {
			r = da.Mul(db)
		}
		return toDecimal128(r)
	}
	if a.Type == bsoncore.TypeDouble || b.Type == bsoncore.TypeDouble {
		fa, fb := floatOf(a), floatOf(b)
		if op == '+' {
			return fa + fb, nil
		}
		return fa * fb, nil
	}
	ia, ib := intOf(a), intOf(b)
	var r int64
	overflow := false
	if op == '+' {
		r = ia + ib
		overflow = (ia > 0 && ib > 0 && r < 0) || (ia < 0 && ib < 0 && r >= 0)
	} else {
		r = ia * ib
		overflow = ia != 0 && (r/ia != ib || (ia == -1 && ib == math.MinInt64) || (ib == -1 && ia == math.MinInt64))
	}
	if overflow {
		return nil, badValue("Failed to apply %c: integer overflow (%d %c %d)", op, ia, op, ib)
	}
	if a.Type == bsoncore.TypeInt32 && b.Type == bsoncore.TypeInt32 && r >= math.MinInt32 && r <= math.MaxInt32 {
		return int32(r), nil
	}
	return r, nil
}

func floatOf(v bsoncore.Value) float64 {
	switch v.Type {
	case bsoncore.TypeDouble:
		return v.Double()
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		return float64(intOf(v))
	}
	return math.NaN()
}

func decimalOf(v bsoncore.Value) (decimal.Decimal, error) {
	switch v.Type {
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		return decimal.NewFromInt(intOf(v)), nil
	case bsoncore.TypeDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return decimal.Decimal{}, badValue("mongotest: cannot do decimal arithmetic with %v", f)
		}
		return decimal.NewFromFloat(f), nil
	case bsoncore.TypeDecimal128:
		d := bson.NewDecimal128(v.Decimal128())
		if d.IsNaN() || d.IsInf() != 0 {
			return decimal.Decimal{}, badValue("mongotest: cannot do decimal arithmetic with %s", d)
		}
		r, err := decimal.NewFromString(d.String())
		if err != nil {
			return decimal.Decimal{}, badValue("mongotest: cannot parse decimal %s: %v", d, err)
		}
		return r, nil
	}
	return decimal.Decimal{}, badValue("not a number")
}

// toDecimal128 converts d to Decimal128, rounding to 34 significant digits
// if needed.
func toDecimal128(d decimal.Decimal) (bson.Decimal128, error) {
	// Format as coefficient and exponent so the scale is kept the way
	// IEEE 754-2008 decimal arithmetic keeps it (0.10 + 0.20 = 0.30).
	if r, err := bson.ParseDecimal128(fmt.Sprintf("%sE%d", d.Coefficient().String(), d.Exponent())); err == nil {
		return r, nil
	}
	digits := len(d.Coefficient().String())
	if digits > 34 {
		d = d.Round(int32(34 - (digits + int(d.Exponent())) + 0))
	}
	r, err := bson.ParseDecimal128(d.String())
	if err != nil {
		return bson.Decimal128{}, badValue("decimal result %s out of range: %v", d, err)
	}
	return r, nil
}

// upsertSeed builds the document an upsert starts from: the equality
// conditions of the filter.
func upsertSeed(filter bsoncore.Document) (bson.D, error) {
	d := bson.D{}
	var walk func(f bsoncore.Document) error
	walk = func(f bsoncore.Document) error {
		elems, _ := f.Elements()
		for _, e := range elems {
			k, v := e.Key(), e.Value()
			if k == "$and" {
				arr, _ := v.ArrayOK()
				vals, _ := arr.Values()
				for _, sv := range vals {
					if sd, ok := sv.DocumentOK(); ok {
						if err := walk(sd); err != nil {
							return err
						}
					}
				}
				continue
			}
			if strings.HasPrefix(k, "$") {
				continue
			}
			if isOperatorDoc(v) {
				eq, err := v.Document().LookupErr("$eq")
				if err != nil {
					continue
				}
				v = eq
			}
			if v.Type == bsoncore.TypeRegex {
				continue
			}
			var err error
			d, err = setPath(d, strings.Split(k, "."), toGo(v))
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(filter); err != nil {
		return nil, err
	}
	return d, nil
}

// withIDFirst returns doc with its _id as the first field, generating an
// ObjectId when it has none.
func withIDFirst(doc bsoncore.Document) (bsoncore.Document, bsoncore.Value, error) {
	elems, err := doc.Elements()
	if err != nil {
		return nil, bsoncore.Value{}, badValue("invalid document: %v", err)
	}
	if len(elems) > 0 && elems[0].Key() == "_id" {
		return doc, elems[0].Value(), nil
	}
	idx, out := bsoncore.AppendDocumentStart(make([]byte, 0, len(doc)+17))
	var id bsoncore.Value
	found := false
	for _, e := range elems {
		if e.Key() == "_id" {
			id, found = e.Value(), true
		}
	}
	if !found {
		id = bsoncore.Value{Type: bsoncore.TypeObjectID, Data: bsoncore.AppendObjectID(nil, bson.NewObjectID())}
	}
	out = bsoncore.AppendValueElement(out, "_id", id)
	for _, e := range elems {
		if e.Key() != "_id" {
			out = append(out, e...)
		}
	}
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	d := bsoncore.Document(out)
	v, _ := docID(d)
	return d, v, nil
}
