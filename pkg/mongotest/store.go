package mongotest

import (
	"crypto/rand"
	"slices"
	"sort"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// docRec is one stored document. The document bytes are immutable: an update
// stores a new slice, so earlier references (oplog images, cursors) stay
// valid without copying.
type docRec struct {
	key     string
	id      bsoncore.Value
	doc     bsoncore.Document
	deleted bool
}

// collection holds the documents of one namespace keyed by idKey(_id), with
// an ordered index over _id that is maintained lazily: inserts go to pending
// and are merged (sort of the new keys + linear merge) the next time ordered
// iteration is needed, and deleted records are skipped and compacted away.
// Writes are O(1); the first ordered read after k writes costs
// O(k log k + n).
type collection struct {
	db, name string
	uuid     []byte
	docs     map[string]*docRec
	sorted   []*docRec
	pending  []*docRec
	stale    int
	indexes  []bsoncore.Document
}

func newCollection(db, name string) *collection {
	u := make([]byte, 16)
	_, _ = rand.Read(u)
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	c := &collection{db: db, name: name, uuid: u, docs: make(map[string]*docRec)}
	idx := bsoncore.NewDocumentBuilder().
		AppendInt32("v", 2).
		AppendDocument("key", bsoncore.NewDocumentBuilder().AppendInt32("_id", 1).Build()).
		AppendString("name", "_id_").Build()
	c.indexes = []bsoncore.Document{idx}
	return c
}

func (c *collection) get(key string) *docRec { return c.docs[key] }

func (c *collection) insert(key string, id bsoncore.Value, doc bsoncore.Document) {
	r := &docRec{key: key, id: id, doc: doc}
	c.docs[key] = r
	c.pending = append(c.pending, r)
}

func (c *collection) remove(key string) {
	if r, ok := c.docs[key]; ok {
		r.deleted = true
		delete(c.docs, key)
		c.stale++
	}
}

func recLess(a, b *docRec) int { return compareValues(a.id, b.id) }

// ensureSorted brings the ordered index up to date.
func (c *collection) ensureSorted() {
	if len(c.pending) == 0 && c.stale <= len(c.sorted)/2 {
		return
	}
	pend := c.pending[:0:0]
	for _, r := range c.pending {
		if !r.deleted {
			pend = append(pend, r)
		}
	}
	slices.SortFunc(pend, recLess)
	out := make([]*docRec, 0, len(c.docs))
	i, j := 0, 0
	for i < len(c.sorted) || j < len(pend) {
		if i < len(c.sorted) && c.sorted[i].deleted {
			i++
			continue
		}
		if j >= len(pend) || (i < len(c.sorted) && recLess(c.sorted[i], pend[j]) <= 0) {
			out = append(out, c.sorted[i])
			i++
		} else {
			out = append(out, pend[j])
			j++
		}
	}
	c.sorted = out
	c.pending = nil
	c.stale = 0
}

// scan calls fn for each document in _id order (descending when reverse),
// starting at the first _id >= from (or <= from when reverse) if from is
// set, until fn returns false.
func (c *collection) scan(reverse bool, from *bsoncore.Value, fn func(r *docRec) bool) {
	c.ensureSorted()
	recs := c.sorted
	if reverse {
		start := len(recs) - 1
		if from != nil {
			start = sort.Search(len(recs), func(i int) bool { return compareValues(recs[i].id, *from) > 0 }) - 1
		}
		for i := start; i >= 0; i-- {
			if recs[i].deleted {
				continue
			}
			if !fn(recs[i]) {
				return
			}
		}
		return
	}
	start := 0
	if from != nil {
		start = sort.Search(len(recs), func(i int) bool { return compareValues(recs[i].id, *from) >= 0 })
	}
	for i := start; i < len(recs); i++ {
		if recs[i].deleted {
			continue
		}
		if !fn(recs[i]) {
			return
		}
	}
}

// database is a set of collections.
type database struct {
	name  string
	colls map[string]*collection
}

// nsKey identifies a namespace.
type nsKey struct{ db, coll string }

func (n nsKey) String() string { return n.db + "." + n.coll }

// coll returns the collection of ns, or nil.
func (s *Server) coll(ns nsKey) *collection {
	d := s.dbs[ns.db]
	if d == nil {
		return nil
	}
	return d.colls[ns.coll]
}

// ensureColl returns the collection of ns, creating it (and its database)
// if needed. Caller holds s.mu.
func (s *Server) ensureColl(ns nsKey) (*collection, bool) {
	d := s.dbs[ns.db]
	if d == nil {
		d = &database{name: ns.db, colls: make(map[string]*collection)}
		s.dbs[ns.db] = d
	}
	c := d.colls[ns.coll]
	if c != nil {
		return c, false
	}
	c = newCollection(ns.db, ns.coll)
	d.colls[ns.coll] = c
	return c, true
}

// docID returns the _id value of doc.
func docID(doc bsoncore.Document) (bsoncore.Value, bool) {
	v, err := doc.LookupErr("_id")
	if err != nil {
		return bsoncore.Value{}, false
	}
	return v, true
}

// validID reports whether v may be used as an _id.
func validID(v bsoncore.Value) bool {
	switch v.Type {
	case bsoncore.TypeArray, bsoncore.TypeRegex, bsoncore.TypeUndefined:
		return false
	}
	return true
}

// idDoc builds {_id: id}.
func idDoc(id bsoncore.Value) bsoncore.Document {
	return bsoncore.BuildDocument(nil, bsoncore.AppendValueElement(nil, "_id", id))
}
