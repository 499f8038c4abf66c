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

// ---- change streams ----

// csCursor is an open change stream.
type csCursor struct {
	id      int64
	ns      string // cursor.ns reported to the driver
	db      string
	coll    string // "" for database and cluster streams
	cluster bool
	next    int64 // next oplog sequence to scan
	last    resumeToken
	minTs   *bson.Timestamp
	stages  []csStage // $match / $project stages after $changeStream
	fullDoc string
	before  string
	// pendingInvalidate is the entry whose invalidate event is still to be
	// produced; invalidated is set once it was (returned or filtered out by
	// the user's stages), and the cursor closes on the next scan step. See
	// lifecycle.go.
	pendingInvalidate *oplogEntry
	invalidated       *resumeToken
	// split: the pipeline ends with $changeStreamSplitLargeEvent;
	// fragments are the fragments of a split event still to be returned;
	// skipFragments is how many fragments of the first event to skip
	// when resuming from a fragment's token (split.go).
	split         bool
	fragments     []fragment
	skipFragments int

	inUse   bool
	lastUse time.Time
}

type csOptions struct {
	resumeAfter *resumeToken
	startAfter  *resumeToken
	startAt     *bson.Timestamp
	fullDoc     string
	before      string
}

func parseChangeStreamStage(spec bsoncore.Document) (csOptions, bool, error) {
	o := csOptions{fullDoc: "default", before: "off"}
	allForCluster := false
	elems, _ := spec.Elements()
	for _, e := range elems {
		v := e.Value()
		switch e.Key() {
		case "resumeAfter", "startAfter":
			t, err := parseResumeToken(v)
			if err != nil {
				return o, false, err
			}
			if e.Key() == "resumeAfter" {
				o.resumeAfter = &t
			} else {
				o.startAfter = &t
			}
		case "startAtOperationTime":
			if v.Type != bsoncore.TypeTimestamp {
				return o, false, newError(codeTypeMismatch, "startAtOperationTime must be a timestamp")
			}
			t, i := v.Timestamp()
			o.startAt = &bson.Timestamp{T: t, I: i}
		case "fullDocument":
			s, _ := v.StringValueOK()
			switch s {
			case "default", "updateLookup", "whenAvailable", "required":
				o.fullDoc = s
			default:
				return o, false, badValue("unknown fullDocument option %q", s)
			}
		case "fullDocumentBeforeChange":
			s, _ := v.StringValueOK()
			switch s {
			case "off", "whenAvailable", "required":
				o.before = s
			default:
				return o, false, badValue("unknown fullDocumentBeforeChange option %q", s)
			}
		case "allChangesForCluster":
			allForCluster = truthy(v)
		case "showExpandedEvents", "showMigrationEvents", "showSystemEvents", "showRawUpdateDescription":
		default:
			return o, false, newError(40415, "BSON field '$changeStream.%s' is an unknown field.", e.Key())
		}
	}
	if o.resumeAfter != nil && o.startAfter != nil {
		// assertIsLegalSpecification (document_source_change_stream.cpp).
		return o, false, newError(50865, "Do not specify both 'resumeAfter' and 'startAfter' in a $changeStream stage")
	}
	n := 0
	for _, x := range []bool{o.resumeAfter != nil, o.startAfter != nil, o.startAt != nil} {
		if x {
			n++
		}
	}
	if n > 1 {
		return o, false, badValue("Only one type of resume option is allowed, but multiple were found")
	}
	return o, allForCluster, nil
}

// historyLost builds the ChangeStreamHistoryLost error.
func historyLost(what string) *cmdError {
	return newError(codeChangeStreamHistoryLost,
		"Executor error during aggregate :: caused by :: Resume of change stream was not possible, as the resume point may no longer be in the oplog (%s)", what)
}

// openChangeStream positions a new change stream cursor. Caller holds s.mu.
func (s *Server) openChangeStream(c *csCursor, o csOptions) error {
	oldest := s.oplog[0].oplogTs()
	switch {
	case o.resumeAfter != nil || o.startAfter != nil:
		t := o.resumeAfter
		if t == nil {
			t = o.startAfter
		}
		if t.invalidate && o.resumeAfter != nil {
			// DocumentSourceChangeStream::assertIsLegalSpecification
			// (src/mongo/db/pipeline/document_source_change_stream.cpp);
			// startAfter the same token is allowed (see lifecycle.go).
			return newError(codeInvalidResumeToken, "Attempting to resume a change stream using 'resumeAfter' is not allowed from an invalidate notification")
		}
		if compareTimestamps(t.ts, oldest) < 0 || t.seq+1 < s.firstSeq {
			return historyLost(fmt.Sprintf("resume token at %d.%d is older than the oldest oplog entry %d.%d", t.ts.T, t.ts.I, oldest.T, oldest.I))
		}
		if t.seq >= s.nextSeq {
			return newError(codeChangeStreamFatal, "cannot resume stream; the resume token was not found (it is newer than the newest oplog entry)")
		}
		// The token's own entry may just have been dropped (when it was the
		// last one before the retained window); otherwise it must match.
		if e := s.entry(t.seq); e == nil && t.seq != s.firstSeq-1 || e != nil && compareTimestamps(e.ts, t.ts) != 0 {
			return newError(codeChangeStreamFatal, "cannot resume stream; the resume token was not found")
		} else if e != nil && !t.invalidate && s.invalidates(c, e) {
			// Resuming right after the event that invalidates this stream:
			// the invalidate event comes next.
			c.pendingInvalidate = e
		}
		c.next = t.seq + 1
		c.last = resumeToken{ts: t.ts, seq: t.seq}
		if t.fragment > 0 {
			if err := s.resumeFromFragment(c, *t); err != nil { // split.go
				return err
			}
		}
	case o.startAt != nil:
		if compareTimestamps(*o.startAt, oldest) < 0 {
			return historyLost(fmt.Sprintf("startAtOperationTime %d.%d is older than the oldest oplog entry %d.%d", o.startAt.T, o.startAt.I, oldest.T, oldest.I))
		}
		i := sort.Search(len(s.oplog), func(i int) bool { return compareTimestamps(s.oplog[i].ts, *o.startAt) >= 0 })
		c.next = s.firstSeq + int64(i)
		if prev := s.entry(c.next - 1); prev != nil {
			c.last = resumeToken{ts: prev.ts, seq: prev.seq}
		} else {
			c.last = resumeToken{ts: *o.startAt, seq: c.next - 1}
		}
		ts := *o.startAt
		c.minTs = &ts
	default:
		newest := s.oplog[len(s.oplog)-1]
		c.next = s.nextSeq
		c.last = resumeToken{ts: newest.ts, seq: newest.seq}
	}
	return nil
}

// inScope reports whether the entry concerns the stream's namespace(s).
func (c *csCursor) inScope(e *oplogEntry) bool {
	if e.kind == opNoop {
		return false
	}
	if e.kind == opRename {
		return renameTouches(e, c.watchesNS)
	}
	if c.cluster {
		switch e.db {
		case "admin", "config", "local":
			return false
		}
		return !strings.HasPrefix(e.coll, "system.")
	}
	if e.db != c.db {
		return false
	}
	if c.coll == "" {
		return !strings.HasPrefix(e.coll, "system.")
	}
	return e.coll == c.coll
}

// invalidates reports whether e ends the stream c (see lifecycle.go for the
// server's rules).
func (s *Server) invalidates(c *csCursor, e *oplogEntry) bool {
	switch {
	case c.cluster:
		return false
	case c.coll != "":
		if e.kind == opRename {
			return renameTouches(e, func(ns nsKey) bool { return ns == nsKey{c.db, c.coll} })
		}
		return e.kind == opDrop && e.db == c.db && e.coll == c.coll
	default:
		return e.kind == opDropDatabase && e.db == c.db
	}
}

// csBatch is the result of one scan of a change stream.
type csBatch struct {
	events []bsoncore.Document
	pbrt   bsoncore.Document
	closed bool // the stream was invalidated: cursor id 0
}

// scanChangeStream collects up to limit events (limit <= 0: no count
// limit). Caller holds s.mu.
func (s *Server) scanChangeStream(c *csCursor, limit int) (csBatch, error) {
	var b csBatch
	if c.pendingInvalidate == nil && c.invalidated == nil && c.next < s.firstSeq {
		return b, newError(codeChangeStreamHistoryLost,
			"Executor error during getMore :: caused by :: Resume of change stream was not possible, as the resume point may no longer be in the oplog")
	}
	size := 0
	for {
		if limit > 0 && len(b.events) >= limit {
			break
		}
		if len(c.fragments) > 0 {
			// The rest of a split event comes before anything else.
			if !c.takeFragment(&b, &size) {
				break
			}
			continue
		}
		if c.invalidated != nil {
			// The step after the invalidate: mongod throws
			// ChangeStreamInvalidated and closes the cursor (lifecycle.go).
			b.closed = true
			c.last = *c.invalidated
			break
		}
		if c.pendingInvalidate != nil {
			// The invalidate goes through the user's stages like any
			// event (lifecycle.go).
			ev, keep, err := c.produceInvalidate()
			if err != nil {
				return b, err
			}
			if keep {
				b.events = append(b.events, ev)
			}
			continue
		}
		if size > maxBSONSize-(1<<20) {
			break
		}
		e := s.entry(c.next)
		if e == nil {
			break
		}
		c.next++
		c.last = resumeToken{ts: e.ts, seq: e.seq}
		if !c.inScope(e) {
			continue
		}
		if c.minTs != nil && compareTimestamps(e.ts, *c.minTs) < 0 {
			continue
		}
		ev, err := s.buildEvent(c, e)
		if err != nil {
			return b, err
		}
		ev, keep, err := c.applyStages(ev)
		if err != nil {
			return b, err
		}
		if keep {
			// The size limit and $changeStreamSplitLargeEvent (split.go).
			frags, err := c.sizeEvent(ev, c.last)
			if err != nil {
				return b, err
			}
			b.events = append(b.events, frags[0].doc)
			size += len(frags[0].doc)
			c.last = frags[0].tok
			c.fragments = frags[1:]
		}
		if s.invalidates(c, e) {
			c.pendingInvalidate = e
		}
	}
	b.pbrt = c.last.doc()
	return b, nil
}

// buildEvent renders the change event of e as MongoDB 6/7 does.
func (s *Server) buildEvent(c *csCursor, e *oplogEntry) (bsoncore.Document, error) {
	if err := c.checkImages(e); err != nil { // images.go
		return nil, err
	}
	tok := resumeToken{ts: e.ts, seq: e.seq}
	idx, d := bsoncore.AppendDocumentStart(nil)
	d = bsoncore.AppendDocumentElement(d, "_id", tok.doc())
	d = bsoncore.AppendStringElement(d, "operationType", opTypeNames[e.kind])
	d = bsoncore.AppendTimestampElement(d, "clusterTime", e.ts.T, e.ts.I)
	d = bsoncore.AppendDateTimeElement(d, "wallTime", e.wall)
	switch e.kind {
	case opInsert, opReplace:
		d = bsoncore.AppendDocumentElement(d, "fullDocument", e.post)
	case opUpdate:
		switch c.fullDoc {
		case "updateLookup":
			if coll := s.coll(nsKey{e.db, e.coll}); coll != nil {
				if r := coll.get(idKey(e.id)); r != nil {
					d = bsoncore.AppendDocumentElement(d, "fullDocument", r.doc)
					break
				}
			}
			d = bsoncore.AppendNullElement(d, "fullDocument")
		case "whenAvailable", "required":
			d = appendImage(d, "fullDocument", e, e.post) // images.go
		}
	}
	idxNS, nsd := bsoncore.AppendDocumentStart(nil)
	nsd = bsoncore.AppendStringElement(nsd, "db", e.db)
	if e.kind != opDropDatabase {
		nsd = bsoncore.AppendStringElement(nsd, "coll", e.coll)
	}
	nsd, _ = bsoncore.AppendDocumentEnd(nsd, idxNS)
	d = bsoncore.AppendDocumentElement(d, "ns", nsd)
	if e.kind == opRename {
		// ns is the source, to the target (rename.go).
		d = bsoncore.AppendDocumentElement(d, "to", renameTargetNS(e))
	}
	switch e.kind {
	case opInsert, opUpdate, opReplace, opDelete:
		d = bsoncore.AppendDocumentElement(d, "documentKey", idDoc(e.id))
	}
	if e.kind == opUpdate {
		d = bsoncore.AppendDocumentElement(d, "updateDescription", e.upd)
	}
	if c.before != "off" {
		switch e.kind {
		case opUpdate, opReplace, opDelete:
			d = appendImage(d, "fullDocumentBeforeChange", e, e.pre) // images.go
		}
	}
	if e.inTxn {
		d = bsoncore.AppendDocumentElement(d, "lsid", e.lsid)
		d = bsoncore.AppendInt64Element(d, "txnNumber", e.txnNumber)
	}
	d, err := bsoncore.AppendDocumentEnd(d, idx)
	return d, err
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

// csStage is a $match (m set) or $project (p set) stage applied to events.
type csStage struct {
	m matcher
	p bsoncore.Document
}

// applyStages runs the user's stages over one event.
func (c *csCursor) applyStages(ev bsoncore.Document) (bsoncore.Document, bool, error) {
	for _, st := range c.stages {
		if st.m != nil {
			if !st.m.match(ev) {
				return nil, false, nil
			}
			continue
		}
		ev = project(ev, st.p)
		if _, err := ev.LookupErr("_id"); err != nil {
			return nil, false, newError(codeChangeStreamFatal, "Encountered an event whose _id field, which contains the resume token, was modified by the pipeline. Modifying the _id field of an event makes it impossible to resume the stream from that point.")
		}
	}
	return ev, true, nil
}
