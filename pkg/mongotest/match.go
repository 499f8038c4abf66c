package mongotest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// matcher is a compiled query filter (the subset of MongoDB's query language
// described in doc.go). It is used for find/count/delete/update filters, for
// aggregate $match, and for $match stages after $changeStream.
type matcher interface {
	match(doc bsoncore.Document) bool
}

type matchAll struct{}

func (matchAll) match(bsoncore.Document) bool { return true }

type andMatcher []matcher

func (m andMatcher) match(d bsoncore.Document) bool {
	for _, x := range m {
		if !x.match(d) {
			return false
		}
	}
	return true
}

type orMatcher []matcher

func (m orMatcher) match(d bsoncore.Document) bool {
	for _, x := range m {
		if x.match(d) {
			return true
		}
	}
	return false
}

type norMatcher []matcher

func (m norMatcher) match(d bsoncore.Document) bool {
	for _, x := range m {
		if x.match(d) {
			return false
		}
	}
	return true
}

// fieldMatcher applies a list of operators to the values found at a path.
type fieldMatcher struct {
	path []string
	ops  []fieldOp
}

// fieldOp is one operator applied to the candidate values of a path.
type fieldOp interface {
	test(c *candidates) bool
}

// candidates are the values a dotted path resolves to in a document,
// following arrays as MongoDB does.
type candidates struct {
	// vals are the values found at the path (arrays appear both as the whole
	// array and, for terminal arrays, as each element).
	vals []bsoncore.Value
	// whole are the values found at the path without expanding terminal
	// arrays (used by $exists, $size).
	whole []bsoncore.Value
	// missing is set when at least one branch of the path did not exist.
	missing bool
}

func (m *fieldMatcher) match(d bsoncore.Document) bool {
	var c candidates
	collect(bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: d}, m.path, &c, false)
	for _, op := range m.ops {
		if !op.test(&c) {
			return false
		}
	}
	return true
}

// collect resolves path below v into c.
func collect(v bsoncore.Value, path []string, c *candidates, viaArray bool) {
	if len(path) == 0 {
		c.whole = append(c.whole, v)
		c.vals = append(c.vals, v)
		if v.Type == bsoncore.TypeArray {
			vals, _ := bsoncore.Document(v.Data).Values()
			c.vals = append(c.vals, vals...)
		}
		return
	}
	switch v.Type {
	case bsoncore.TypeEmbeddedDocument:
		sub, err := bsoncore.Document(v.Data).LookupErr(path[0])
		if err != nil {
			c.missing = true
			return
		}
		collect(sub, path[1:], c, false)
	case bsoncore.TypeArray:
		arr := bsoncore.Document(v.Data)
		if _, err := strconv.Atoi(path[0]); err == nil {
			if sub, err := arr.LookupErr(path[0]); err == nil {
				collect(sub, path[1:], c, false)
			} else {
				c.missing = true
			}
			return
		}
		vals, _ := arr.Values()
		found := false
		for _, e := range vals {
			if e.Type == bsoncore.TypeEmbeddedDocument {
				found = true
				collect(e, path, c, true)
			}
		}
		if !found {
			c.missing = true
		}
	default:
		c.missing = true
	}
}

type eqOp struct{ v bsoncore.Value }

func (o eqOp) test(c *candidates) bool {
	if o.v.Type == bsoncore.TypeNull && (c.missing || len(c.vals) == 0) {
		return true
	}
	for _, v := range c.vals {
		if valuesEqual(v, o.v) {
			return true
		}
		if o.v.Type == bsoncore.TypeNull && v.Type == bsoncore.TypeUndefined {
			return true
		}
	}
	return false
}

type notOp struct{ ops []fieldOp }

func (o notOp) test(c *candidates) bool {
	for _, op := range o.ops {
		if !op.test(c) {
			return true
		}
	}
	return false
}

type cmpOp struct {
	v  bsoncore.Value
	ok func(int) bool
}

func (o cmpOp) test(c *candidates) bool {
	for _, v := range c.vals {
		// Comparisons only match values of the same type bracket, except
		// against MinKey/MaxKey, which compare with everything.
		if canonicalType(v.Type) != canonicalType(o.v.Type) &&
			o.v.Type != bsoncore.TypeMinKey && o.v.Type != bsoncore.TypeMaxKey {
			continue
		}
		if o.ok(compareValues(v, o.v)) {
			return true
		}
	}
	return false
}

type inOp struct {
	vals []bsoncore.Value
	res  []*regexp.Regexp
}

func (o inOp) test(c *candidates) bool {
	for _, q := range o.vals {
		if (eqOp{q}).test(c) {
			return true
		}
	}
	for _, re := range o.res {
		if (regexOp{re}).test(c) {
			return true
		}
	}
	return false
}

type existsOp bool

func (o existsOp) test(c *candidates) bool { return (len(c.whole) > 0) == bool(o) }

type sizeOp int

func (o sizeOp) test(c *candidates) bool {
	for _, v := range c.whole {
		if v.Type == bsoncore.TypeArray {
			vals, _ := bsoncore.Document(v.Data).Values()
			if len(vals) == int(o) {
				return true
			}
		}
	}
	return false
}

type typeOp []bsoncore.Type

func (o typeOp) test(c *candidates) bool {
	for _, v := range c.vals {
		for _, t := range o {
			if v.Type == t {
				return true
			}
		}
	}
	return false
}

type regexOp struct{ re *regexp.Regexp }

func (o regexOp) test(c *candidates) bool {
	for _, v := range c.vals {
		if v.Type == bsoncore.TypeString || v.Type == bsoncore.TypeSymbol {
			if o.re.MatchString(stringOf(v)) {
				return true
			}
		}
	}
	return false
}

type elemMatchOp struct{ m matcher }

func (o elemMatchOp) test(c *candidates) bool {
	for _, v := range c.whole {
		if v.Type != bsoncore.TypeArray {
			continue
		}
		vals, _ := bsoncore.Document(v.Data).Values()
		for _, e := range vals {
			if e.Type == bsoncore.TypeEmbeddedDocument && o.m.match(bsoncore.Document(e.Data)) {
				return true
			}
		}
	}
	return false
}

// compileFilter compiles a query filter document.
func compileFilter(filter bsoncore.Document) (matcher, error) {
	if len(filter) == 0 {
		return matchAll{}, nil
	}
	elems, err := filter.Elements()
	if err != nil {
		return nil, badValue("invalid filter: %v", err)
	}
	var ms andMatcher
	for _, e := range elems {
		key := e.Key()
		v := e.Value()
		switch key {
		case "$and", "$or", "$nor":
			arr, ok := v.ArrayOK()
			if !ok {
				return nil, badValue("%s must be an array", key)
			}
			vals, _ := arr.Values()
			if len(vals) == 0 {
				return nil, badValue("%s/$or/$nor entries need to be full objects", key)
			}
			var subs []matcher
			for _, sv := range vals {
				sd, ok := sv.DocumentOK()
				if !ok {
					return nil, badValue("%s entries need to be full objects", key)
				}
				sm, err := compileFilter(sd)
				if err != nil {
					return nil, err
				}
				subs = append(subs, sm)
			}
			switch key {
			case "$and":
				ms = append(ms, andMatcher(subs))
			case "$or":
				ms = append(ms, orMatcher(subs))
			default:
				ms = append(ms, norMatcher(subs))
			}
		case "$comment":
		case "$expr", "$where", "$text", "$jsonSchema":
			return nil, &cmdError{code: 2, msg: "mongotest: unsupported query operator " + key}
		default:
			if strings.HasPrefix(key, "$") {
				return nil, badValue("unknown top level operator: %s", key)
			}
			ops, err := compileFieldOps(v)
			if err != nil {
				return nil, err
			}
			ms = append(ms, &fieldMatcher{path: strings.Split(key, "."), ops: ops})
		}
	}
	if len(ms) == 1 {
		return ms[0], nil
	}
	return ms, nil
}

// isOperatorDoc reports whether v is a document whose first key is an
// operator ($gt etc.).
func isOperatorDoc(v bsoncore.Value) bool {
	d, ok := v.DocumentOK()
	if !ok {
		return false
	}
	e, err := d.IndexErr(0)
	if err != nil {
		return false
	}
	return strings.HasPrefix(e.Key(), "$")
}

// compileFieldOps compiles the condition on one field: a regex, a value to
// equal, or an operator document whose operators must all hold.
func compileFieldOps(v bsoncore.Value) ([]fieldOp, error) {
	if v.Type == bsoncore.TypeRegex {
		re, err := compileRegex(v.Regex())
		if err != nil {
			return nil, err
		}
		return []fieldOp{regexOp{re}}, nil
	}
	if !isOperatorDoc(v) {
		return []fieldOp{eqOp{v}}, nil
	}
	elems, _ := v.Document().Elements()
	var ops []fieldOp
	var regexOpts string
	for _, e := range elems {
		if e.Key() == "$options" {
			regexOpts = e.Value().StringValue()
		}
	}
	for _, e := range elems {
		op, err := compileFieldOp(e.Key(), e.Value(), regexOpts)
		if err != nil {
			return nil, err
		}
		if op != nil {
			ops = append(ops, op)
		}
	}
	return ops, nil
}

// compileFieldOp compiles one operator of an operator document; regexOpts
// is the document's $options, which belongs to its $regex. It returns a nil
// fieldOp for $options itself.
func compileFieldOp(key string, ov bsoncore.Value, regexOpts string) (fieldOp, error) {
	switch key {
	case "$eq":
		return eqOp{ov}, nil
	case "$ne":
		return notOp{[]fieldOp{eqOp{ov}}}, nil
	case "$gt":
		return cmpOp{ov, func(c int) bool { return c > 0 }}, nil
	case "$gte":
		return cmpOp{ov, func(c int) bool { return c >= 0 }}, nil
	case "$lt":
		return cmpOp{ov, func(c int) bool { return c < 0 }}, nil
	case "$lte":
		return cmpOp{ov, func(c int) bool { return c <= 0 }}, nil
	case "$in", "$nin":
		in, err := compileIn(key, ov)
		if err != nil {
			return nil, err
		}
		if key == "$in" {
			return in, nil
		}
		return notOp{[]fieldOp{in}}, nil
	case "$exists":
		return existsOp(truthy(ov)), nil
	case "$not":
		sub, err := compileFieldOps(ov)
		if err != nil {
			return nil, err
		}
		return notOp{sub}, nil
	case "$size":
		n, ok := ov.AsInt64OK()
		if !ok {
			return nil, badValue("$size needs a number")
		}
		return sizeOp(n), nil
	case "$type":
		ts, err := parseTypes(ov)
		if err != nil {
			return nil, err
		}
		return typeOp(ts), nil
	case "$regex":
		return compileRegexOp(ov, regexOpts)
	case "$options":
		return nil, nil
	case "$elemMatch":
		d, ok := ov.DocumentOK()
		if !ok {
			return nil, badValue("$elemMatch needs an Object")
		}
		m, err := compileFilter(d)
		if err != nil {
			return nil, err
		}
		return elemMatchOp{m}, nil
	}
	return nil, badValue("unknown operator: %s", key)
}

// compileIn compiles the array of $in or $nin (key); its regexes match as
// regexes, not as values.
func compileIn(key string, ov bsoncore.Value) (inOp, error) {
	arr, ok := ov.ArrayOK()
	if !ok {
		return inOp{}, badValue("%s needs an array", key)
	}
	vals, _ := arr.Values()
	var in inOp
	for _, x := range vals {
		if x.Type == bsoncore.TypeRegex {
			re, err := compileRegex(x.Regex())
			if err != nil {
				return inOp{}, err
			}
			in.res = append(in.res, re)
			continue
		}
		in.vals = append(in.vals, x)
	}
	return in, nil
}

// compileRegexOp compiles $regex, a string or a BSON regex; a $options
// beside it overrides the regex's own options.
func compileRegexOp(ov bsoncore.Value, regexOpts string) (fieldOp, error) {
	var pattern, opts string
	switch ov.Type {
	case bsoncore.TypeRegex:
		pattern, opts = ov.Regex()
	case bsoncore.TypeString:
		pattern = ov.StringValue()
	default:
		return nil, badValue("$regex has to be a string")
	}
	if regexOpts != "" {
		opts = regexOpts
	}
	re, err := compileRegex(pattern, opts)
	if err != nil {
		return nil, err
	}
	return regexOp{re}, nil
}

func compileRegex(pattern, opts string) (*regexp.Regexp, error) {
	flags := ""
	for _, o := range opts {
		switch o {
		case 'i', 'm', 's':
			flags += string(o)
		}
	}
	if flags != "" {
		pattern = "(?" + flags + ")" + pattern
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, badValue("invalid regex: %v", err)
	}
	return re, nil
}

var typeAliases = map[string]bsoncore.Type{
	"double": bsoncore.TypeDouble, "string": bsoncore.TypeString, "object": bsoncore.TypeEmbeddedDocument,
	"array": bsoncore.TypeArray, "binData": bsoncore.TypeBinary, "objectId": bsoncore.TypeObjectID,
	"bool": bsoncore.TypeBoolean, "date": bsoncore.TypeDateTime, "null": bsoncore.TypeNull,
	"regex": bsoncore.TypeRegex, "int": bsoncore.TypeInt32, "timestamp": bsoncore.TypeTimestamp,
	"long": bsoncore.TypeInt64, "decimal": bsoncore.TypeDecimal128, "minKey": bsoncore.TypeMinKey,
	"maxKey": bsoncore.TypeMaxKey,
}

func parseTypes(v bsoncore.Value) ([]bsoncore.Type, error) {
	var vals []bsoncore.Value
	if arr, ok := v.ArrayOK(); ok {
		vals, _ = arr.Values()
	} else {
		vals = []bsoncore.Value{v}
	}
	var out []bsoncore.Type
	for _, x := range vals {
		if s, ok := x.StringValueOK(); ok {
			if s == "number" {
				out = append(out, bsoncore.TypeDouble, bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeDecimal128)
				continue
			}
			t, ok := typeAliases[s]
			if !ok {
				return nil, badValue("unknown type name alias: %s", s)
			}
			out = append(out, t)
			continue
		}
		n, ok := x.AsInt64OK()
		if !ok {
			return nil, badValue("type must be represented as a number or a string")
		}
		out = append(out, bsoncore.Type(n))
	}
	return out, nil
}

// truthy interprets a value as a boolean the way MongoDB does for flags.
func truthy(v bsoncore.Value) bool {
	switch v.Type {
	case bsoncore.TypeBoolean:
		return v.Boolean()
	case bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeDouble, bsoncore.TypeDecimal128:
		return compareNumbers(v, bsoncore.Value{Type: bsoncore.TypeInt32, Data: bsoncore.AppendInt32(nil, 0)}) != 0
	case bsoncore.TypeNull, bsoncore.TypeUndefined, 0:
		return false
	}
	return true
}

func badValue(format string, args ...any) *cmdError {
	return &cmdError{code: 2, msg: fmt.Sprintf(format, args...)}
}
