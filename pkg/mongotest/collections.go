package mongotest

import (
	"slices"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// ---- collections and databases ----

// listArgs reads the arguments listCollections and listDatabases share:
// the filter, matched against each entry as it would be returned, and
// nameOnly.
func listArgs(r *request) (matcher, bool, error) {
	filter, err := r.docArg("filter")
	if err != nil {
		return nil, false, err
	}
	m, err := compileFilter(filter)
	if err != nil {
		return nil, false, err
	}
	return m, r.boolArg("nameOnly"), nil
}

func (s *Server) cmdListCollections(r *request) (bson.D, error) {
	m, nameOnly, err := listArgs(r)
	if err != nil {
		return nil, err
	}
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
	m, nameOnly, err := listArgs(r)
	if err != nil {
		return nil, err
	}
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
