package mongotest

import (
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// session is the server side of a logical session (lsid).
type session struct {
	key  string            // lsid.id bytes
	lsid bsoncore.Document // {id: UUID, uid: BinData(32)} as reported in change events
	// txnNumber is the highest transaction number seen (transactions and
	// retryable writes share it).
	txnNumber int64
	txn       *txnState
	// Retryable write memo: the reply to the write with txnNumber retryNum,
	// returned again if the driver retries it.
	retryNum   int64
	retryCmd   string
	retryReply bson.D
}

type txnStatus int

const (
	txnActive txnStatus = iota
	txnCommitted
	txnAborted
)

// txnState is a multi-document transaction. Its writes are applied to an
// overlay that the transaction's own reads see; commit applies them to the
// store and the oplog atomically under one cluster time.
type txnState struct {
	sess    *session
	number  int64
	status  txnStatus
	reason  string
	ops     []*pendingOp
	overlay map[nsKey]map[string]*overlayRec
	locks   []string
}

type overlayRec struct {
	id  bsoncore.Value
	doc bsoncore.Document // nil: deleted in the transaction
}

type pendingOp struct {
	ns   nsKey
	kind opKind
	key  string
	id   bsoncore.Value
	pre  bsoncore.Document
	post bsoncore.Document
	upd  bsoncore.Document
}

// getSession returns (creating) the session for an lsid document.
// Caller holds s.mu.
func (s *Server) getSession(lsid bsoncore.Document) (*session, error) {
	idv, err := lsid.LookupErr("id")
	if err != nil || idv.Type != bsoncore.TypeBinary {
		return nil, badValue("lsid.id must be a UUID")
	}
	_, idb := idv.Binary()
	key := string(idb)
	if ss := s.sessions[key]; ss != nil {
		return ss, nil
	}
	ev := bsoncore.BuildDocument(nil,
		bsoncore.AppendBinaryElement(nil, "id", 4, idb),
		bsoncore.AppendBinaryElement(nil, "uid", 0, s.uid),
	)
	ss := &session{key: key, lsid: ev, retryNum: -1}
	s.sessions[key] = ss
	return ss, nil
}

func lockKey(ns nsKey, key string) string { return ns.db + "." + ns.coll + "\x00" + key }

// abortTxn aborts t and releases its locks. Caller holds s.mu.
func (s *Server) abortTxn(t *txnState, reason string) {
	if t == nil || t.status != txnActive {
		return
	}
	t.status = txnAborted
	t.reason = reason
	s.releaseLocks(t)
	t.ops = nil
	t.overlay = nil
}

func (s *Server) releaseLocks(t *txnState) {
	for _, k := range t.locks {
		if s.locks[k] == t {
			delete(s.locks, k)
		}
	}
	t.locks = nil
}

// abortTxnsOn aborts every active transaction that wrote to a namespace
// matching pred (used when collections or databases are dropped).
func (s *Server) abortTxnsOn(pred func(nsKey) bool, reason string) {
	for _, ss := range s.sessions {
		t := ss.txn
		if t == nil || t.status != txnActive {
			continue
		}
		for ns := range t.overlay {
			if pred(ns) {
				s.abortTxn(t, reason)
				break
			}
		}
	}
}

// commitTxn applies the transaction's writes: one applyOps oplog entry
// (or a chain of them), its writes' events sharing the commit's cluster
// time with increasing txnOpIndex (applyops.go). Caller holds s.mu.
func (s *Server) commitTxn(t *txnState) {
	if len(t.ops) > 0 {
		s.logTxn(t) // applyops.go
		s.broadcast()
	}
	t.status = txnCommitted
	s.releaseLocks(t)
	t.ops = nil
	t.overlay = nil
}

// writer performs reads and writes either directly on the store
// (autocommit) or inside a transaction. Caller holds s.mu.
type writer struct {
	s   *Server
	txn *txnState
	// wrote is set when an autocommit write appended to the oplog.
	wrote bool
}

// get returns the visible document with the given key.
func (w *writer) get(ns nsKey, key string) bsoncore.Document {
	if w.txn != nil {
		if o := w.txn.overlay[ns]; o != nil {
			if r, ok := o[key]; ok {
				return r.doc
			}
		}
	}
	if c := w.s.coll(ns); c != nil {
		if r := c.get(key); r != nil {
			return r.doc
		}
	}
	return nil
}

// scan calls fn for the visible documents of ns in _id order.
func (w *writer) scan(ns nsKey, reverse bool, from *bsoncore.Value, fn func(id bsoncore.Value, doc bsoncore.Document) bool) {
	c := w.s.coll(ns)
	var ov map[string]*overlayRec
	if w.txn != nil {
		ov = w.txn.overlay[ns]
	}
	if len(ov) == 0 {
		if c != nil {
			c.scan(reverse, from, func(r *docRec) bool { return fn(r.id, r.doc) })
		}
		return
	}
	type item struct {
		id  bsoncore.Value
		doc bsoncore.Document
	}
	var items []item
	if c != nil {
		c.scan(false, nil, func(r *docRec) bool {
			if o, ok := ov[r.key]; ok {
				if o.doc != nil {
					items = append(items, item{r.id, o.doc})
				}
				return true
			}
			items = append(items, item{r.id, r.doc})
			return true
		})
	}
	for k, o := range ov {
		if o.doc == nil {
			continue
		}
		if c != nil && c.get(k) != nil {
			continue
		}
		items = append(items, item{o.id, o.doc})
	}
	slices.SortFunc(items, func(a, b item) int { return compareValues(a.id, b.id) })
	if reverse {
		slices.Reverse(items)
	}
	for _, it := range items {
		if from != nil {
			c := compareValues(it.id, *from)
			if (!reverse && c < 0) || (reverse && c > 0) {
				continue
			}
		}
		if !fn(it.id, it.doc) {
			return
		}
	}
}

// write records one document write.
func (w *writer) write(ns nsKey, kind opKind, id bsoncore.Value, key string, pre, post, upd bsoncore.Document) error {
	s := w.s
	lk := lockKey(ns, key)
	holder := s.locks[lk]
	if w.txn == nil {
		if holder != nil {
			// A transaction holds this document: it loses (MongoDB would
			// make one of the two wait or fail; the transaction failing
			// with a transient error is the outcome drivers handle).
			s.abortTxn(holder, "write conflict with a concurrent write outside the transaction")
		}
		c, _ := s.ensureColl(ns)
		switch kind {
		case opInsert:
			c.insert(key, id, post)
		case opUpdate, opReplace:
			if r := c.get(key); r != nil {
				r.doc = post
			} else {
				c.insert(key, id, post)
			}
		case opDelete:
			c.remove(key)
		}
		if ns.db == "local" {
			return nil // like MongoDB, writes to local are not replicated
		}
		s.appendEntry(&oplogEntry{kind: kind, db: ns.db, coll: ns.coll, uuid: c.uuid, id: id, pre: pre, post: post, upd: upd}, s.nextTs())
		w.wrote = true
		return nil
	}
	t := w.txn
	if holder != nil && holder != t {
		return &cmdError{code: codeWriteConflict, msg: "WriteConflict error: this operation conflicted with another operation. Please retry your operation or multi-document transaction.", labels: []string{"TransientTransactionError"}}
	}
	if holder == nil {
		s.locks[lk] = t
		t.locks = append(t.locks, lk)
	}
	if t.overlay == nil {
		t.overlay = make(map[nsKey]map[string]*overlayRec)
	}
	o := t.overlay[ns]
	if o == nil {
		o = make(map[string]*overlayRec)
		t.overlay[ns] = o
	}
	if kind == opDelete {
		o[key] = &overlayRec{id: id}
	} else {
		o[key] = &overlayRec{id: id, doc: post}
	}
	t.ops = append(t.ops, &pendingOp{ns: ns, kind: kind, key: key, id: id, pre: pre, post: post, upd: upd})
	return nil
}

// txnFields are the session fields of a command.
type txnFields struct {
	lsid          bsoncore.Document
	txnNumber     int64
	hasTxnNumber  bool
	autocommit    bool
	hasAutocommit bool
	start         bool
}

func parseTxnFields(body bsoncore.Document) txnFields {
	var f txnFields
	if v, err := body.LookupErr("lsid"); err == nil {
		f.lsid, _ = v.DocumentOK()
	}
	if v, err := body.LookupErr("txnNumber"); err == nil {
		f.txnNumber, f.hasTxnNumber = v.AsInt64OK()
	}
	if v, err := body.LookupErr("autocommit"); err == nil {
		f.hasAutocommit = true
		f.autocommit = truthy(v)
	}
	if v, err := body.LookupErr("startTransaction"); err == nil {
		f.start = truthy(v)
	}
	return f
}

func noSuchTxn(format string, args ...any) *cmdError {
	e := newError(codeNoSuchTransaction, format, args...)
	e.labels = []string{"TransientTransactionError"}
	return e
}

// resolveTxn finds or starts the transaction a command belongs to.
// Caller holds s.mu.
func (s *Server) resolveTxn(cmd string, f txnFields) (*txnState, error) {
	if f.lsid == nil || !f.hasTxnNumber {
		return nil, badValue("a transaction requires lsid and txnNumber")
	}
	if f.autocommit {
		return nil, badValue("autocommit must be false in a transaction")
	}
	ss, err := s.getSession(f.lsid)
	if err != nil {
		return nil, err
	}
	if f.txnNumber < ss.txnNumber {
		return nil, newError(codeTransactionTooOld, "Cannot start transaction %d on session because a newer transaction %d has already started", f.txnNumber, ss.txnNumber)
	}
	if f.start {
		if ss.txn != nil && ss.txn.number == f.txnNumber {
			return nil, newError(codeConflictingOperationInProgress, "Transaction %d has already been started on this session", f.txnNumber)
		}
		s.abortTxn(ss.txn, "a newer transaction was started")
		ss.txnNumber = f.txnNumber
		ss.txn = &txnState{sess: ss, number: f.txnNumber}
		return ss.txn, nil
	}
	t := ss.txn
	if t == nil || t.number != f.txnNumber {
		return nil, noSuchTxn("Transaction with { txnNumber: %d } has been aborted or was never started.", f.txnNumber)
	}
	switch t.status {
	case txnAborted:
		reason := ""
		if t.reason != "" {
			reason = " (" + t.reason + ")"
		}
		return nil, noSuchTxn("Transaction with { txnNumber: %d } has been aborted%s.", f.txnNumber, reason)
	case txnCommitted:
		if cmd == "commitTransaction" {
			return t, nil
		}
		return nil, newError(codeTransactionCommitted, "Transaction with { txnNumber: %d } has been committed.", f.txnNumber)
	}
	return t, nil
}

const codeConflictingOperationInProgress int32 = 117

func init() {
	codeNames[codeConflictingOperationInProgress] = "ConflictingOperationInProgress"
	codeNames[263] = "OperationNotSupportedInTransaction"
}

// txnCommands are the commands allowed inside a transaction.
var txnCommands = map[string]bool{
	"find": true, "insert": true, "update": true, "delete": true, "aggregate": true,
	"getMore": true, "findAndModify": true, "count": true, "distinct": true,
	"commitTransaction": true, "abortTransaction": true, "killCursors": true,
}

func isWriteCommand(cmd string) bool {
	switch cmd {
	case "insert", "update", "delete", "findAndModify":
		return true
	}
	return false
}
