package mongotest

import (
	"bytes"
	"strconv"
	"strings"

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
