package mongotest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

type opKind int

const (
	opNoop opKind = iota
	opInsert
	opUpdate
	opReplace
	opDelete
	opDrop
	opDropDatabase
	opCreate
)

var opTypeNames = map[opKind]string{
	opInsert: "insert", opUpdate: "update", opReplace: "replace", opDelete: "delete",
	opDrop: "drop", opDropDatabase: "dropDatabase", opCreate: "create",
}

// oplogEntry is one entry of the in-memory oplog.
type oplogEntry struct {
	seq  int64 // position in the oplog, 1-based, never reused
	ts   bson.Timestamp
	wall int64 // ms since epoch
	kind opKind
	db   string
	coll string
	uuid []byte
	id   bsoncore.Value    // documentKey._id for document operations
	post bsoncore.Document // document after the write (insert/update/replace)
	pre  bsoncore.Document // document before the write (update/replace/delete)
	upd  bsoncore.Document // updateDescription (update)
	msg  string            // no-op message
	// rename is set for opRename entries (db/coll/uuid are the source's);
	// see rename.go.
	rename *renameInfo
	// imaged: the collection had changeStreamPreAndPostImages enabled
	// when the write was made, so its images exist (images.go).
	imaged bool
	// txn places a write of a committed transaction in its applyOps
	// oplog entry (applyops.go).
	txn *txnPlacement

	// Transaction fields: set only for writes of a multi-document
	// transaction.
	lsid       bsoncore.Document
	txnNumber  int64
	txnOpIndex int32
	inTxn      bool
}

// nextTs advances the cluster clock: seconds are wall-clock seconds and the
// increment grows within a second. Caller holds s.mu.
func (s *Server) nextTs() bson.Timestamp {
	now := time.Now()
	sec := uint32(now.Unix())
	if sec > s.clock.T {
		s.clock = bson.Timestamp{T: sec, I: 1}
	} else {
		s.clock.I++
	}
	s.lastWall = now
	return s.clock
}

// appendEntry adds e to the oplog at ts. Caller holds s.mu and must call
// s.broadcast after its last entry.
func (s *Server) appendEntry(e *oplogEntry, ts bson.Timestamp) {
	e.seq = s.nextSeq
	s.nextSeq++
	e.ts = ts
	e.imaged = s.imagesEnabled(e.uuid) // images.go
	e.wall = s.lastWall.UnixMilli()
	s.oplog = append(s.oplog, e)
	s.oplogMem += e.size()
	if m := s.opts.MaxOplogEntries; m > 0 && len(s.oplog) > m {
		s.dropOplogPrefix(len(s.oplog) - m)
	}
	if m := s.opts.MaxOplogBytes; m > 0 && s.oplogMem > m {
		n := 0
		for mem := s.oplogMem; mem > m && n < len(s.oplog)-1; n++ {
			mem -= s.oplog[n].size()
		}
		s.dropOplogPrefix(n)
	}
}

// size estimates the memory an entry keeps alive.
func (e *oplogEntry) size() int64 {
	return int64(len(e.post)+len(e.upd)+len(e.id.Data)+len(e.db)+len(e.coll)) + 160
}

// broadcast wakes every waiting getMore. Caller holds s.mu.
func (s *Server) broadcast() {
	close(s.notify)
	s.notify = make(chan struct{})
}

func (s *Server) dropOplogPrefix(n int) {
	n = s.alignedPrefix(n) // transactions go whole (applyops.go)
	if n <= 0 {
		return
	}
	for i := 0; i < n; i++ {
		s.oplogMem -= s.oplog[i].size()
		s.oplog[i] = nil
	}
	s.oplog = s.oplog[n:]
	s.firstSeq += int64(n)
	if cap(s.oplog) > 4*len(s.oplog)+1024 {
		s.oplog = append(make([]*oplogEntry, 0, 2*len(s.oplog)+16), s.oplog...)
	}
}

// entry returns the oplog entry with sequence seq, or nil if it is not
// retained. Caller holds s.mu.
func (s *Server) entry(seq int64) *oplogEntry {
	i := seq - s.firstSeq
	if i < 0 || i >= int64(len(s.oplog)) {
		return nil
	}
	return s.oplog[i]
}

// TruncateOplog drops every oplog entry whose timestamp is older than
// before, as the capped oplog of a real replica set does when it rolls over.
// Like a real oplog it never becomes empty: the newest entry (and the other
// entries of its transaction) are always kept. Change streams that resume
// from a point before the new oldest entry, and open change stream cursors
// that had not yet read a dropped entry, get ChangeStreamHistoryLost (286).
func (s *Server) TruncateOplog(before bson.Timestamp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.oplog) == 0 {
		return
	}
	newest := s.oplog[len(s.oplog)-1].ts
	if compareTimestamps(before, newest) > 0 {
		before = newest
	}
	n := sort.Search(len(s.oplog), func(i int) bool { return compareTimestamps(s.oplog[i].oplogTs(), before) >= 0 })
	s.dropOplogPrefix(n)
	s.broadcast() // waiting cursors re-check their position
}

// OldestOplogTime returns the timestamp of the oldest retained oplog entry.
func (s *Server) OldestOplogTime() bson.Timestamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oplog[0].oplogTs()
}

// LatestOplogTime returns the timestamp of the newest oplog entry (the
// current cluster time).
func (s *Server) LatestOplogTime() bson.Timestamp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oplog[len(s.oplog)-1].ts
}

// OplogLen returns the number of retained oplog entries.
func (s *Server) OplogLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.oplog)
}

// ---- resume tokens ----

// A resume token's _data is uppercase hex:
//
//	"82" TTTTTTTT IIIIIIII SSSSSSSSSSSSSSSS FF
//
// 0x82 followed by the big-endian cluster time is exactly how MongoDB's own
// tokens begin (KeyString timestamp), so code that peeks at the cluster time
// of a token keeps working. S is the oplog sequence of the entry (which
// orders entries sharing a cluster time, e.g. the writes of one transaction)
// and F is 01 for invalidate events. The fixed width makes the hex strings
// sort in oplog order.
type resumeToken struct {
	ts         bson.Timestamp
	seq        int64
	invalidate bool
	// fragment is the splitEvent.fragment number (1-based) of a split
	// event's fragment, 0 otherwise; it adds 4 hex digits (split.go).
	fragment int
}

func (t resumeToken) data() string {
	f := 0
	if t.invalidate {
		f = 1
	}
	if t.fragment > 0 {
		return fmt.Sprintf("82%08X%08X%016X%02X%04X", t.ts.T, t.ts.I, uint64(t.seq), f, t.fragment)
	}
	return fmt.Sprintf("82%08X%08X%016X%02X", t.ts.T, t.ts.I, uint64(t.seq), f)
}

func (t resumeToken) doc() bsoncore.Document {
	return bsoncore.BuildDocument(nil, bsoncore.AppendStringElement(nil, "_data", t.data()))
}

func parseResumeToken(v bsoncore.Value) (resumeToken, error) {
	d, ok := v.DocumentOK()
	if !ok {
		return resumeToken{}, newError(codeInvalidResumeToken, "resume token must be a document")
	}
	dv, err := d.LookupErr("_data")
	if err != nil {
		return resumeToken{}, newError(codeInvalidResumeToken, "resume token must contain _data")
	}
	s, ok := dv.StringValueOK()
	if !ok || len(s) != 36 && len(s) != 40 || !strings.HasPrefix(s, "82") {
		return resumeToken{}, newError(codeInvalidResumeToken, "resume token %q was not issued by this server", s)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return resumeToken{}, newError(codeInvalidResumeToken, "malformed resume token %q", s)
	}
	var t resumeToken
	t.ts.T = uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])
	t.ts.I = uint32(b[5])<<24 | uint32(b[6])<<16 | uint32(b[7])<<8 | uint32(b[8])
	for _, x := range b[9:17] {
		t.seq = t.seq<<8 | int64(x)
	}
	t.invalidate = b[17] == 1
	if len(b) == 20 {
		t.fragment = int(b[18])<<8 | int(b[19])
	}
	return t, nil
}

// oplogDoc renders e in the shape of a local.oplog.rs document.
func (s *Server) oplogDoc(e *oplogEntry) bsoncore.Document {
	if e.txn != nil {
		return s.applyOpsDoc(e) // nil but for the entry's last write (applyops.go)
	}
	idx, d := bsoncore.AppendDocumentStart(nil)
	if e.inTxn {
		d = bsoncore.AppendDocumentElement(d, "lsid", e.lsid)
		d = bsoncore.AppendInt64Element(d, "txnNumber", e.txnNumber)
	}
	op := "n"
	ns := ""
	var o bsoncore.Document
	var o2 bsoncore.Document
	switch e.kind {
	case opNoop:
		o = bsoncore.BuildDocument(nil, bsoncore.AppendStringElement(nil, "msg", e.msg))
	case opInsert:
		op, ns, o = "i", e.db+"."+e.coll, e.post
		o2 = idDoc(e.id)
	case opUpdate:
		op, ns = "u", e.db+"."+e.coll
		o = v2Diff(e.pre, e.post, e.upd) // applyops.go
		o2 = idDoc(e.id)
	case opReplace:
		op, ns, o = "u", e.db+"."+e.coll, e.post
		o2 = idDoc(e.id)
	case opDelete:
		op, ns, o = "d", e.db+"."+e.coll, idDoc(e.id)
	case opDrop:
		op, ns = "c", e.db+".$cmd"
		o = bsoncore.BuildDocument(nil, bsoncore.AppendStringElement(nil, "drop", e.coll))
	case opDropDatabase:
		op, ns = "c", e.db+".$cmd"
		o = bsoncore.BuildDocument(nil, bsoncore.AppendInt32Element(nil, "dropDatabase", 1))
	case opCreate:
		op, ns = "c", e.db+".$cmd"
		o = bsoncore.BuildDocument(nil, bsoncore.AppendStringElement(nil, "create", e.coll))
	case opRename:
		op, ns = "c", e.db+".$cmd"
		o, o2 = renameOplogFields(e)
	}
	d = bsoncore.AppendStringElement(d, "op", op)
	d = bsoncore.AppendStringElement(d, "ns", ns)
	if len(e.uuid) > 0 {
		d = bsoncore.AppendBinaryElement(d, "ui", 4, e.uuid)
	}
	d = bsoncore.AppendDocumentElement(d, "o", o)
	if o2 != nil {
		d = bsoncore.AppendDocumentElement(d, "o2", o2)
	}
	d = bsoncore.AppendTimestampElement(d, "ts", e.ts.T, e.ts.I)
	d = bsoncore.AppendInt64Element(d, "t", 1)
	d = bsoncore.AppendInt64Element(d, "v", 2)
	d = bsoncore.AppendDateTimeElement(d, "wall", e.wall)
	if e.inTxn {
		d = bsoncore.AppendInt32Element(d, "txnOpIndex", e.txnOpIndex)
	}
	d, _ = bsoncore.AppendDocumentEnd(d, idx)
	return d
}

func emptyUserDigest() []byte {
	h := sha256.Sum256(nil)
	return h[:]
}
