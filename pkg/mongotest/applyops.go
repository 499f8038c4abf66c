package mongotest

import (
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// How committed transactions and updates look in local.oplog.rs.
//
// A committed (unprepared) multi-document transaction is one command entry
// {op: "c", ns: "admin.$cmd", o: {applyOps: [{op, ns, ui, o, o2}, ...]},
// lsid, txnNumber, prevOpTime: {ts: Timestamp(0, 0), t: -1}}. When its
// operations do not fit in one entry of BSONObjMaxUserSize (16 MiB), they
// are packed into a chain: every entry but the last has partialTxn: true,
// the last (the implicit commit) has count: <number of operations>, and
// each entry's prevOpTime is the previous one's optime. The entries get
// consecutive optimes reserved at commit. Sources:
// TransactionOperations::getApplyOpsInfo and
// packTransactionStatementsForApplyOps
// (src/mongo/db/transaction/transaction_operations.cpp: a new entry starts
// when the next operation would take the entry past the limit, and an
// entry always holds at least one operation), OpObserverImpl's
// onUnpreparedTransactionCommit/logOplogEntries
// (src/mongo/db/op_observer/op_observer_impl.cpp), and the entries of the
// server's own test VerifyPipelineLargeTxn
// (src/mongo/db/s/resharding/resharding_agg_test.cpp).
//
// Change events of a transaction all carry the commit entry's cluster time
// and increasing txnOpIndex (one event per operation), which is how the
// emulator keeps them internally: every operation is an oplogEntry with ts
// = the commit entry's ts and txn set; rendering local.oplog.rs groups them
// by applyOps entry (applyOpsDoc), and txnPlacement.ts is the entry's own
// optime.
//
// The oplog loses a transaction whole: when the first entry of a chain
// falls off the oplog the transaction can no longer be read, so the
// emulator drops all its operations together (alignedPrefix) and a change
// stream that had not read them fails with ChangeStreamHistoryLost (286).
//
// An update is {op: "u", o: {$v: 2, diff: <diff>}, o2: {_id}} with the
// $v:2 diff format of src/mongo/db/update/document_diff_serialization.h
// (sections d, u, i, then s<field> sub-diffs; array diffs {a: true,
// l: <new length>, u<index>: value, s<index>: sub-diff}); see v2Diff.

// txnPlacement places one write of a committed transaction in the oplog.
type txnPlacement struct {
	first, last         int64 // oplog seqs of the transaction's first and last writes
	partFirst, partLast int64 // seqs of the writes in this applyOps entry
	part, parts         int   // index of the entry in the chain, number of entries
	count               int   // number of writes in the transaction
	// ts is the applyOps entry's own optime (the commit entry's is the
	// writes' oplogEntry.ts); prevTs the previous entry's in the chain
	// (zero for the first).
	ts, prevTs bson.Timestamp
	inner      bsoncore.Document // the write as an element of applyOps
}

// oplogTs is the optime of the oplog entry that holds e.
func (e *oplogEntry) oplogTs() bson.Timestamp {
	if e.txn != nil {
		return e.txn.ts
	}
	return e.ts
}

// maxApplyOpsBytes is the size an applyOps entry's operations may reach
// (BSONObjMaxUserSize, the limit getApplyOpsInfo is given for
// transactions).
const maxApplyOpsBytes = maxBSONSize

// logTxn applies a committing transaction's writes to the store and
// appends them to the oplog as described above. Caller holds s.mu and
// broadcasts afterwards.
func (s *Server) logTxn(t *txnState) {
	n := len(t.ops)
	first := s.nextSeq
	places := make([]*txnPlacement, n)
	uuids := make([][]byte, n)
	// Pack the operations into entries.
	var parts [][2]int // [from, to) op indexes
	from, bytes := 0, 0
	for i, op := range t.ops {
		c, _ := s.ensureColl(op.ns)
		uuids[i] = c.uuid
		inner := innerOp(op.kind, op.ns, c.uuid, op.id, op.pre, op.post, op.upd)
		// An array element: type byte, the index as a string, NUL, value.
		sz := len(inner) + 2 + len(strconv.Itoa(i-from))
		if i > from && bytes+sz > maxApplyOpsBytes {
			parts = append(parts, [2]int{from, i})
			from, bytes = i, 2+1 // the element of index 0
			sz = len(inner) + 3
		}
		bytes += sz
		places[i] = &txnPlacement{first: first, last: first + int64(n) - 1, count: n, inner: inner}
	}
	parts = append(parts, [2]int{from, n})
	// One optime per entry, reserved together; the writes carry the last
	// (the commit's).
	tss := make([]bson.Timestamp, len(parts))
	for k := range parts {
		tss[k] = s.nextTs()
	}
	commit := tss[len(tss)-1]
	for k, p := range parts {
		for i := p[0]; i < p[1]; i++ {
			pl := places[i]
			pl.part, pl.parts, pl.ts = k, len(parts), tss[k]
			pl.partFirst, pl.partLast = first+int64(p[0]), first+int64(p[1])-1
			if k > 0 {
				pl.prevTs = tss[k-1]
			}
		}
	}
	for i, op := range t.ops {
		c, _ := s.ensureColl(op.ns)
		switch op.kind {
		case opInsert:
			c.insert(op.key, op.id, op.post)
		case opUpdate, opReplace:
			if r := c.get(op.key); r != nil {
				r.doc = op.post
			} else {
				c.insert(op.key, op.id, op.post)
			}
		case opDelete:
			c.remove(op.key)
		}
		s.appendEntry(&oplogEntry{
			kind: op.kind, db: op.ns.db, coll: op.ns.coll, uuid: uuids[i],
			id: op.id, pre: op.pre, post: op.post, upd: op.upd,
			lsid: t.sess.lsid, txnNumber: t.number, txnOpIndex: int32(i), inTxn: true,
			txn: places[i],
		}, commit)
	}
}

// innerOp renders a write as an oplog CRUD entry's op, ns, ui, o, o2.
func innerOp(kind opKind, ns nsKey, uuid []byte, id bsoncore.Value, pre, post, upd bsoncore.Document) bsoncore.Document {
	op, o, o2 := crudObject(kind, id, pre, post, upd)
	b := bsoncore.NewDocumentBuilder().
		AppendString("op", op).
		AppendString("ns", ns.String()).
		AppendBinary("ui", 4, uuid).
		AppendDocument("o", o)
	if o2 != nil {
		b.AppendDocument("o2", o2)
	}
	return b.Build()
}

// crudObject is the op, o and o2 of a document write's oplog entry:
// insert {o: doc, o2: {_id}}, update {o: {$v: 2, diff}, o2: {_id}},
// replace {o: doc, o2: {_id}}, delete {o: {_id}}.
func crudObject(kind opKind, id bsoncore.Value, pre, post, upd bsoncore.Document) (op string, o, o2 bsoncore.Document) {
	switch kind {
	case opInsert:
		return "i", post, idDoc(id)
	case opUpdate:
		return "u", v2Diff(pre, post, upd), idDoc(id)
	case opReplace:
		return "u", post, idDoc(id)
	case opDelete:
		return "d", idDoc(id), nil
	}
	return "n", bsoncore.BuildDocument(nil), nil
}

// applyOpsDoc renders the applyOps entry that holds e, from the entry's
// last write (nil for its other writes: the entry is listed once).
// Caller holds s.mu.
func (s *Server) applyOpsDoc(e *oplogEntry) bsoncore.Document {
	p := e.txn
	if e.seq != p.partLast {
		return nil
	}
	aidx, arr := bsoncore.AppendArrayStart(nil)
	for seq, i := p.partFirst, 0; seq <= p.partLast; seq, i = seq+1, i+1 {
		w := s.entry(seq)
		if w == nil || w.txn == nil {
			// alignedPrefix keeps transactions whole; a gap is a bug.
			panic("mongotest: applyOps entry with a write missing from the oplog")
		}
		arr = bsoncore.AppendDocumentElement(arr, strconv.Itoa(i), w.txn.inner)
	}
	arr, _ = bsoncore.AppendArrayEnd(arr, aidx)
	oidx, o := bsoncore.AppendDocumentStart(nil)
	o = bsoncore.AppendArrayElement(o, "applyOps", arr)
	switch {
	case p.part < p.parts-1:
		o = bsoncore.AppendBooleanElement(o, "partialTxn", true)
	case p.parts > 1:
		o = bsoncore.AppendInt64Element(o, "count", int64(p.count))
	}
	o, _ = bsoncore.AppendDocumentEnd(o, oidx)
	prev := bsoncore.NewDocumentBuilder()
	if p.part == 0 {
		prev.AppendTimestamp("ts", 0, 0).AppendInt64("t", -1)
	} else {
		prev.AppendTimestamp("ts", p.prevTs.T, p.prevTs.I).AppendInt64("t", 1)
	}
	return bsoncore.NewDocumentBuilder().
		AppendDocument("lsid", e.lsid).
		AppendInt64("txnNumber", e.txnNumber).
		AppendString("op", "c").
		AppendString("ns", "admin.$cmd").
		AppendDocument("o", o).
		AppendTimestamp("ts", p.ts.T, p.ts.I).
		AppendInt64("t", 1).
		AppendInt64("v", 2).
		AppendDateTime("wall", e.wall).
		AppendDocument("prevOpTime", prev.Build()).
		Build()
}

// alignedPrefix adjusts the number n of oldest oplog entries to drop so
// that no transaction is split: a transaction that the cut would split is
// dropped whole, unless it holds the newest entry (or is being appended),
// which is always kept. Caller holds s.mu.
func (s *Server) alignedPrefix(n int) int {
	if n <= 0 || n >= len(s.oplog) {
		return n
	}
	e := s.oplog[n]
	if e.txn == nil || e.seq == e.txn.first {
		return n
	}
	if e.txn.last >= s.oplog[len(s.oplog)-1].seq {
		return int(e.txn.first - s.firstSeq)
	}
	return int(e.txn.last-s.firstSeq) + 1
}

// v2Diff renders an update as the $v:2 oplog entry {$v: 2, diff: ...}.
// The diff is the inverse of what the server derives updateDescription
// from (change_stream_document_diff_parser.cpp): each updated path is a u
// (field existed before) or i (new field) entry at its parent, reached
// through s<field> sub-diffs; array elements are u<index> in an array
// diff; removed fields are d entries (value false).
func v2Diff(pre, post, upd bsoncore.Document) bsoncore.Document {
	root := &diffNode{}
	if upd != nil {
		if uf, ok := upd.Lookup("updatedFields").DocumentOK(); ok {
			elems, _ := uf.Elements()
			for _, f := range elems {
				path := strings.Split(f.Key(), ".")
				_, existed := lookupPath(pre, path)
				root.add(post, path, 0, f.Value(), existed, false)
			}
		}
		if rf, ok := upd.Lookup("removedFields").ArrayOK(); ok {
			vals, _ := rf.Values()
			for _, v := range vals {
				if p, ok := v.StringValueOK(); ok {
					root.add(post, strings.Split(p, "."), 0, bsoncore.Value{}, true, true)
				}
			}
		}
	}
	return bsoncore.BuildDocument(nil,
		bsoncore.AppendInt32Element(nil, "$v", 2),
		bsoncore.AppendDocumentElement(nil, "diff", root.doc()))
}

func lookupPath(doc bsoncore.Document, path []string) (bsoncore.Value, bool) {
	if doc == nil {
		return bsoncore.Value{}, false
	}
	v, err := doc.LookupErr(path...)
	return v, err == nil
}

// diffNode is a document or array diff being built.
type diffNode struct {
	array   bool
	deletes []string
	updates []bsoncore.Element // u (document) or u<index> (array) entries
	inserts []bsoncore.Element
	subs    []string // sub-diff field names, in order
	sub     map[string]*diffNode
}

// add records a change of path[i:] under this node; prefix of path[:i]
// exists in post (and pre).
func (n *diffNode) add(post bsoncore.Document, path []string, i int, v bsoncore.Value, existed, remove bool) {
	name := path[i]
	if i == len(path)-1 {
		switch {
		case remove:
			n.deletes = append(n.deletes, name)
		case n.array:
			n.updates = append(n.updates, bsoncore.AppendValueElement(nil, "u"+name, v))
		case existed:
			n.updates = append(n.updates, bsoncore.AppendValueElement(nil, name, v))
		default:
			n.inserts = append(n.inserts, bsoncore.AppendValueElement(nil, name, v))
		}
		return
	}
	child := n.sub[name]
	if child == nil {
		cv, _ := lookupPath(post, path[:i+1])
		child = &diffNode{array: cv.Type == bsoncore.TypeArray}
		if n.sub == nil {
			n.sub = make(map[string]*diffNode)
		}
		n.sub[name] = child
		n.subs = append(n.subs, name)
	}
	child.add(post, path, i+1, v, existed, remove)
}

func (n *diffNode) doc() bsoncore.Document {
	idx, d := bsoncore.AppendDocumentStart(nil)
	if n.array {
		// Entries in ascending numeric index order (ArrayNode's ordered
		// map of children).
		type entry struct {
			i    int
			elem []byte
		}
		var es []entry
		for _, u := range n.updates {
			i, _ := strconv.Atoi(u.Key()[1:])
			es = append(es, entry{i, u})
		}
		for _, name := range n.subs {
			i, _ := strconv.Atoi(name)
			es = append(es, entry{i, bsoncore.AppendDocumentElement(nil, "s"+name, n.sub[name].doc())})
		}
		slices.SortStableFunc(es, func(a, b entry) int { return a.i - b.i })
		d = bsoncore.AppendBooleanElement(d, "a", true)
		for _, e := range es {
			d = append(d, e.elem...)
		}
		d, _ = bsoncore.AppendDocumentEnd(d, idx)
		return d
	}
	if len(n.deletes) > 0 {
		didx, dd := bsoncore.AppendDocumentStart(nil)
		for _, name := range n.deletes {
			dd = bsoncore.AppendBooleanElement(dd, name, false)
		}
		dd, _ = bsoncore.AppendDocumentEnd(dd, didx)
		d = bsoncore.AppendDocumentElement(d, "d", dd)
	}
	for _, sec := range []struct {
		key   string
		elems []bsoncore.Element
	}{{"u", n.updates}, {"i", n.inserts}} {
		if len(sec.elems) == 0 {
			continue
		}
		sidx, sd := bsoncore.AppendDocumentStart(nil)
		for _, e := range sec.elems {
			sd = append(sd, e...)
		}
		sd, _ = bsoncore.AppendDocumentEnd(sd, sidx)
		d = bsoncore.AppendDocumentElement(d, sec.key, sd)
	}
	for _, name := range n.subs {
		d = bsoncore.AppendDocumentElement(d, "s"+name, n.sub[name].doc())
	}
	d, _ = bsoncore.AppendDocumentEnd(d, idx)
	return d
}
