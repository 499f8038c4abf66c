package mongotest

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

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
