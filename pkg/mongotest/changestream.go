package mongotest

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

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

// aggregateChangeStream serves an aggregate whose first stage is
// $changeStream: it opens the stream and returns its first batch. Caller
// holds s.mu.
func (s *Server) aggregateChangeStream(r *request, target bsoncore.Value, stages []stage, batchSize int) (bson.D, error) {
	if r.txn != nil {
		return nil, newError(263, "Operation not permitted in transaction :: caused by :: Cannot run aggregate with $changeStream in a multi-document transaction.")
	}
	if err := s.changeStreamsSupported(); err != nil { // topology.go
		return nil, err
	}
	spec, ok := stages[0].arg.DocumentOK()
	if !ok {
		return nil, badValue("the $changeStream stage specification must be an object")
	}
	o, allForCluster, err := parseChangeStreamStage(spec)
	if err != nil {
		return nil, err
	}
	c, err := newCSCursor(r.db, target, o, allForCluster)
	if err != nil {
		return nil, err
	}
	if err := s.addCSStages(c, stages); err != nil {
		return nil, err
	}
	if err := s.openChangeStream(c, o); err != nil {
		return nil, err
	}
	var b csBatch
	if batchSize == 0 {
		b.pbrt = c.last.doc()
	} else {
		limit := batchSize
		if limit < 0 {
			limit = defaultBatch
		}
		if b, err = s.scanChangeStream(c, limit); err != nil {
			return nil, err
		}
	}
	var id int64
	if !b.closed {
		id = s.newCursorID()
		c.id = id
		c.lastUse = time.Now()
		s.cursors[id] = c
	}
	return csReply("firstBatch", b, id, c.ns), nil
}

// newCSCursor decides the stream's scope from the aggregate target: a
// collection name watches one collection, 1 the database, and 1 on admin
// with allChangesForCluster the whole cluster; the internal databases
// refuse a stream as mongod does.
func newCSCursor(db string, target bsoncore.Value, o csOptions, allForCluster bool) (*csCursor, error) {
	c := &csCursor{db: db, fullDoc: o.fullDoc, before: o.before}
	if coll, ok := target.StringValueOK(); ok {
		c.coll = coll
		c.ns = db + "." + coll
		if allForCluster {
			return nil, badValue("allChangesForCluster is only allowed on admin with aggregate: 1")
		}
		return c, nil
	}
	if n, ok := target.AsInt64OK(); !ok || n != 1 {
		return nil, badValue("aggregate target must be a collection name or 1")
	}
	c.ns = db + ".$cmd.aggregate"
	switch {
	case db == "admin" && allForCluster:
		c.cluster = true
	case db == "admin":
		return nil, newError(codeInvalidNamespace, "$changeStream may not be opened on the internal admin database")
	case allForCluster:
		return nil, badValue("allChangesForCluster may only be used on admin")
	case db == "local" || db == "config":
		return nil, newError(codeInvalidNamespace, "$changeStream may not be opened on the internal %s database", db)
	}
	return c, nil
}

// addCSStages compiles the stages after $changeStream onto c. Only $match
// and $project change what the emulator returns; the reshaping stages are
// accepted so that pipelines written for mongod still open.
func (s *Server) addCSStages(c *csCursor, stages []stage) error {
	for _, st := range stages[1:] {
		switch st.name {
		case "$match":
			d, ok := st.arg.DocumentOK()
			if !ok {
				return badValue("$match must be an object")
			}
			m, err := compileFilter(d)
			if err != nil {
				return err
			}
			c.stages = append(c.stages, csStage{m: m})
		case "$project":
			d, ok := st.arg.DocumentOK()
			if !ok {
				return badValue("$project specification must be an object")
			}
			c.stages = append(c.stages, csStage{p: d})
		case "$addFields", "$set", "$unset", "$replaceRoot", "$replaceWith", "$redact":
			// Accepted and ignored: events are returned whole.
		case "$changeStream":
			return newError(40602, "$changeStream is only valid as the first stage in a pipeline")
		case "$changeStreamSplitLargeEvent": // split.go
			if err := s.parseSplitStage(st, stages); err != nil {
				return err
			}
			c.split = true
		default:
			return newError(codeBadValue, "Stage %s is not permitted in a $changeStream pipeline", st.name)
		}
	}
	return nil
}

func csReply(field string, b csBatch, id int64, ns string) bson.D {
	return bson.D{{Key: "cursor", Value: bson.D{
		{Key: field, Value: rawSlice(b.events)},
		{Key: "postBatchResumeToken", Value: bson.Raw(b.pbrt)},
		{Key: "id", Value: id},
		{Key: "ns", Value: ns},
	}}}
}

// changeStreamGetMore returns the next events of c, waiting up to wait for
// at least one. It is called with s.mu held and releases it while waiting.
func (s *Server) changeStreamGetMore(r *request, c *csCursor, batchSize int, wait time.Duration) (bson.D, error) {
	if c.inUse {
		return nil, newError(codeCursorNotFound, "cursor id %d is already in use", c.id)
	}
	c.inUse = true
	defer func() { c.inUse = false }()
	deadline := time.Now().Add(wait)
	for {
		b, err := s.scanChangeStream(c, batchSize)
		if err != nil {
			delete(s.cursors, c.id)
			return nil, err
		}
		remaining := time.Until(deadline)
		if len(b.events) > 0 || b.closed || remaining <= 0 {
			id := c.id
			if b.closed {
				delete(s.cursors, c.id)
				id = 0
			}
			return csReply("nextBatch", b, id, c.ns), nil
		}
		ch := s.notify
		s.mu.Unlock()
		t := time.NewTimer(remaining)
		select {
		case <-ch:
		case <-t.C:
		case <-s.closing:
		case <-r.c.done:
		}
		t.Stop()
		s.mu.Lock()
		select {
		case <-s.closing:
			return nil, newError(91, "The server is in quiesce mode and will shut down")
		case <-r.c.done:
			return nil, newError(codeHostUnreachable, "connection closed")
		default:
		}
		if s.cursors[c.id] != any(c) {
			return nil, newError(codeCursorNotFound, "cursor id %d was killed", c.id)
		}
	}
}
