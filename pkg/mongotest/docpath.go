package mongotest

import (
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// ---- bson.D path helpers (for the update operators) ----

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
