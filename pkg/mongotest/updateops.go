package mongotest

import (
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// ---- update operators ----

// opTarget is what every update operator works on: the document, the
// operator, and what its path holds before the operator runs. It lets each
// operator family be its own method without a long parameter list.
type opTarget struct {
	d       bson.D
	op      updOp
	full    string // op.path joined with dots, for messages and reports
	cur     any    // the value at op.path; nil when !exists
	exists  bool
	report  func(string)
	removed *[]string
}

// set writes v at the operator's path, reporting the path MongoDB's update
// description lists for the write.
func (t *opTarget) set(v any) (bson.D, error) {
	t.report(reportedPath(t.d, t.op.path))
	return setPath(t.d, t.op.path, v)
}

// applyOp applies one operator to one path. The operators that are a line
// or two stay in the switch; each family beyond that has its own method.
func applyOp(d bson.D, op updOp, inserting bool, report func(string), removed *[]string) (bson.D, error) {
	full := strings.Join(op.path, ".")
	if op.path[0] == "_id" && len(op.path) > 1 {
		return nil, newError(codeImmutableField, "Performing an update on the path '%s' would modify the immutable field '_id'", full)
	}
	cur, exists := getPath(d, op.path)
	t := &opTarget{d: d, op: op, full: full, cur: cur, exists: exists, report: report, removed: removed}
	switch op.op {
	case "$set":
		return t.set(toGo(op.arg))
	case "$setOnInsert":
		if !inserting {
			return d, nil
		}
		return t.set(toGo(op.arg))
	case "$unset":
		nd, ok := unsetIn(d, op.path)
		if ok {
			*removed = append(*removed, full)
		}
		return nd.(bson.D), nil
	case "$inc", "$mul":
		return t.incOrMul()
	case "$min", "$max":
		return t.minOrMax()
	case "$currentDate":
		return t.currentDate()
	case "$rename":
		return t.rename()
	case "$push", "$addToSet":
		return t.pushOrAddToSet()
	case "$pull":
		return t.pull()
	case "$pop":
		return t.pop()
	}
	return nil, newError(codeFailedToParse, "Unknown modifier: %s", op.op)
}

// incOrMul is $inc and $mul. On a missing field $inc sets the argument and
// $mul sets a zero of the argument's type (0 * arg keeps MongoDB's type
// promotion), as mongod does.
func (t *opTarget) incOrMul() (bson.D, error) {
	op := t.op
	if !isNumber(op.arg.Type) {
		return nil, newError(codeTypeMismatch, "Cannot %s with non-numeric argument: {%s: %s}", map[string]string{"$inc": "increment", "$mul": "multiply"}[op.op], t.full, op.arg)
	}
	if !t.exists {
		if op.op == "$inc" {
			return t.set(toGo(op.arg))
		}
		zero, err := arith(coreOf(int32(0)), op.arg, '*')
		if err != nil {
			return nil, err
		}
		return t.set(zero)
	}
	cv := coreOf(t.cur)
	if !isNumber(cv.Type) {
		return nil, newError(codeTypeMismatch, "Cannot apply %s to a value of non-numeric type. {_id: %v} has the field '%s' of non-numeric type %s", op.op, idOfD(t.d), t.full, typeName(cv.Type))
	}
	sym := byte('+')
	if op.op == "$mul" {
		sym = '*'
	}
	r, err := arith(cv, op.arg, sym)
	if err != nil {
		return nil, err
	}
	return t.set(r)
}

// minOrMax is $min and $max: a write only when the argument sorts below
// (above) the current value, so an equal value leaves the document alone.
func (t *opTarget) minOrMax() (bson.D, error) {
	if t.exists {
		c := compareValues(t.op.arg, coreOf(t.cur))
		if (t.op.op == "$min" && c >= 0) || (t.op.op == "$max" && c <= 0) {
			return t.d, nil
		}
	}
	return t.set(toGo(t.op.arg))
}

// currentDate is $currentDate: a date, or a timestamp when the argument is
// {$type: "timestamp"}.
func (t *opTarget) currentDate() (bson.D, error) {
	now := time.Now()
	if ad, ok := t.op.arg.DocumentOK(); ok {
		if typ, _ := ad.Lookup("$type").StringValueOK(); typ == "timestamp" {
			return t.set(bson.Timestamp{T: uint32(now.Unix()), I: 1})
		}
	}
	return t.set(bson.NewDateTimeFromTime(now))
}

// rename is $rename: the source path is reported removed and the target
// set, which is how the update description of a $rename reads.
func (t *opTarget) rename() (bson.D, error) {
	to := strings.Split(t.op.arg.StringValue(), ".")
	if !t.exists {
		return t.d, nil
	}
	nd, _ := unsetIn(t.d, t.op.path)
	d := nd.(bson.D)
	*t.removed = append(*t.removed, t.full)
	t.report(reportedPath(d, to))
	return setPath(d, to, t.cur)
}

// pushOrAddToSet is $push and $addToSet. A plain $push onto an existing
// array reports each appended element rather than the whole array, like
// MongoDB's diff.
func (t *opTarget) pushOrAddToSet() (bson.D, error) {
	var arr bson.A
	if t.exists {
		a, ok := t.cur.(bson.A)
		if !ok {
			return nil, badValue("The field '%s' must be an array but is of type %s in document {_id: %v}", t.full, typeName(coreOf(t.cur).Type), idOfD(t.d))
		}
		arr = append(bson.A{}, a...)
	}
	items, position, slice, err := pushArgs(t.op)
	if err != nil {
		return nil, err
	}
	if t.op.op == "$addToSet" {
		arr = addToSet(arr, items)
	} else {
		arr = pushAt(arr, items, position, slice)
	}
	old, _ := t.cur.(bson.A)
	if t.exists && t.op.op == "$push" && position == nil && slice == nil {
		// Appends are reported element by element, like MongoDB's diff.
		for i := len(old); i < len(arr); i++ {
			t.report(t.full + "." + strconv.Itoa(i))
		}
		return setPath(t.d, t.op.path, arr)
	}
	return t.set(arr)
}

// addToSet appends, in order, the items arr does not hold yet (an item
// repeated within items is added once).
func addToSet(arr bson.A, items []any) bson.A {
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
	return arr
}

// pushAt inserts items at $position (nil: the end; negative: from the end;
// clamped to the array) and then applies $slice (nil: none; negative: keep
// the last elements), in the order $push with $each applies them.
func pushAt(arr bson.A, items []any, position, slice *int) bson.A {
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
	return arr
}

// pull is $pull: a missing field is left alone, a non-array is an error.
func (t *opTarget) pull() (bson.D, error) {
	if !t.exists {
		return t.d, nil
	}
	a, ok := t.cur.(bson.A)
	if !ok {
		return nil, badValue("Cannot apply $pull to a non-array value")
	}
	keep, err := pullFilter(t.op.arg)
	if err != nil {
		return nil, err
	}
	out := bson.A{}
	for _, x := range a {
		if !keep(coreOf(x)) {
			out = append(out, x)
		}
	}
	return t.set(out)
}

// pop is $pop: a negative argument removes the first element, anything
// else the last; a missing field or an empty array is left alone.
func (t *opTarget) pop() (bson.D, error) {
	if !t.exists {
		return t.d, nil
	}
	a, ok := t.cur.(bson.A)
	if !ok {
		return nil, badValue("Path '%s' contains an element of non-array type '%s'", t.full, typeName(coreOf(t.cur).Type))
	}
	if len(a) == 0 {
		return t.d, nil
	}
	n, _ := t.op.arg.AsInt64OK()
	if n < 0 {
		a = append(bson.A{}, a[1:]...)
	} else {
		a = append(bson.A{}, a[:len(a)-1]...)
	}
	return t.set(a)
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
