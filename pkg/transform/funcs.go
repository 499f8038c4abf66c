package transform

import (
	"fmt"
	"regexp"
	"sort"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Func computes a column's value where a declarative mapping cannot say
// it (a derived value). doc is the document the column's fields are
// relative to: the whole document for a top-level column, the array
// element or sub-document for a child column.
//
// The result is a value the BSON encoder accepts (or a bson.RawValue); it
// is then converted by the column's type exactly like a field value, so
// decimal exactness, sign checks, enum translation and the catalog check
// all still apply. nil means "absent": the column's required/default
// decide. An error becomes a *Rejection of the document naming the
// function.
type Func func(doc bson.Raw) (any, error)

var funcs = struct {
	sync.RWMutex
	m map[string]Func
}{m: map[string]Func{}}

var funcNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// RegisterFunc makes fn available to mappings as `func: name`. Register
// before the mappings are parsed (from an init function): a mapping that
// names an unregistered function is invalid. It panics if name is not a
// lower-case identifier, fn is nil, or the name is taken (like
// database/sql.Register).
func RegisterFunc(name string, fn Func) {
	if !funcNameRE.MatchString(name) {
		panic(fmt.Sprintf("transform: RegisterFunc: %q is not a lower-case identifier", name))
	}
	if fn == nil {
		panic("transform: RegisterFunc: nil func " + name)
	}
	funcs.Lock()
	defer funcs.Unlock()
	if _, dup := funcs.m[name]; dup {
		panic("transform: RegisterFunc called twice for " + name)
	}
	funcs.m[name] = fn
}

// FuncNames lists the registered functions, sorted.
func FuncNames() []string {
	funcs.RLock()
	defer funcs.RUnlock()
	out := make([]string, 0, len(funcs.m))
	for n := range funcs.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func lookupFunc(name string) (Func, bool) {
	funcs.RLock()
	defer funcs.RUnlock()
	fn, ok := funcs.m[name]
	return fn, ok
}

// callFunc runs fn and turns its result into a raw value (Type 0 when
// absent). A panicking function is a rejection of the document, not a
// crash of the sink.
func callFunc(fn Func, doc bson.Raw) (v bson.RawValue, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panicked: %v", p)
		}
	}()
	res, err := fn(doc)
	if err != nil {
		return bson.RawValue{}, err
	}
	switch r := res.(type) {
	case nil:
		return bson.RawValue{}, nil
	case bson.RawValue:
		return r, nil
	}
	b, err := bson.Marshal(bson.D{{Key: "v", Value: res}})
	if err != nil {
		return bson.RawValue{}, fmt.Errorf("result %T cannot be encoded as BSON: %v", res, err)
	}
	return bson.Raw(b).Lookup("v"), nil
}

// The built-in functions.
func init() {
	RegisterFunc("created_at", createdAtFunc)
	RegisterFunc("updated_at", updatedAtFunc)
	RegisterFunc("trezor_next_address_index", trezorNextAddressIndex)
}

// present returns doc's field when it is there and not null.
func present(doc bson.Raw, key string) (bson.RawValue, bool) {
	v, err := doc.LookupErr(key)
	if err != nil || v.Type == bson.TypeNull || v.Type == bson.TypeUndefined {
		return bson.RawValue{}, false
	}
	return v, true
}

// createdAtFunc (created_at): the document's createdAt (Mongoose
// timestamps) when it is there, else the creation time embedded in its
// ObjectId _id (exact to the second). Documents written before timestamps
// were enabled lack createdAt; their _id still says when they were made.
// A createdAt of the wrong type is returned as is, so the column rejects
// it.
func createdAtFunc(doc bson.Raw) (any, error) {
	if v, ok := present(doc, "createdAt"); ok {
		return v, nil
	}
	return objectIDTime(doc, "createdAt")
}

// updatedAtFunc (updated_at): updatedAt, else createdAt, else the _id's
// time.
func updatedAtFunc(doc bson.Raw) (any, error) {
	if v, ok := present(doc, "updatedAt"); ok {
		return v, nil
	}
	if v, ok := present(doc, "createdAt"); ok {
		return v, nil
	}
	return objectIDTime(doc, "updatedAt and createdAt")
}

func objectIDTime(doc bson.Raw, missing string) (any, error) {
	v, ok := present(doc, "_id")
	if !ok {
		return nil, nil
	}
	oid, ok := v.ObjectIDOK()
	if !ok {
		return nil, fmt.Errorf("no %s, and _id is a %s, not an ObjectId whose time could stand in", missing, typeName(v.Type))
	}
	return bson.NewDateTimeFromTime(oid.Timestamp()), nil
}

// trezorNextAddressIndex (trezor_next_address_index): the next derivation
// index of a Trezor account, which the TrezorAccount document does not
// store (the app computes it from addresses[]): one past the highest
// addresses[].index, and at least the number of addresses; 0 without
// addresses. An index that is not a non-negative integer is an error.
func trezorNextAddressIndex(doc bson.Raw) (any, error) {
	v, ok := present(doc, "addresses")
	if !ok {
		return int64(0), nil
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, fmt.Errorf("addresses is a %s, not an array", typeName(v.Type))
	}
	var next int64
	n := 0
	err := forEachElement(arr, func(i int, e bson.RawValue) error {
		n++
		d, ok := e.DocumentOK()
		if !ok {
			return fmt.Errorf("addresses.%d is a %s, not a document", i, typeName(e.Type))
		}
		iv, ok := present(d, "index")
		if !ok {
			return nil
		}
		idx, _, err := exactInt(iv)
		if err != nil {
			return fmt.Errorf("addresses.%d.index: %v", i, err)
		}
		if idx < 0 || idx >= 1<<31-1 {
			return fmt.Errorf("addresses.%d.index %d is not a derivation index (0 .. 2^31-2)", i, idx)
		}
		next = max(next, idx+1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return max(next, int64(n)), nil
}
