package mongotest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// This file holds the server version (Options.Version) and what depends on
// it, and the size limit of change events with the
// $changeStreamSplitLargeEvent stage that lifts it.

// defaultVersion is the version buildInfo reports without Options.Version.
const defaultVersion = "7.0.0"

// parseVersion parses "X.Y.Z" (a suffix such as "-rc1" after Z is
// ignored, as versionArray only has numbers).
func parseVersion(v string) ([3]int, error) {
	var out [3]int
	parts := strings.SplitN(v, ".", 3)
	if len(parts) != 3 {
		return out, fmt.Errorf("version %q is not of the form X.Y.Z", v)
	}
	for i, p := range parts {
		if i == 2 {
			if j := strings.IndexFunc(p, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
				p = p[:j]
			}
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, fmt.Errorf("version %q is not of the form X.Y.Z", v)
		}
		out[i] = n
	}
	return out, nil
}

// versionArray is buildInfo's versionArray: [major, minor, patch, 0].
func (s *Server) versionArray() []any {
	return []any{int32(s.version[0]), int32(s.version[1]), int32(s.version[2]), int32(0)}
}

// atLeast reports whether the server version is >= major.minor.patch.
func (s *Server) atLeast(major, minor, patch int) bool {
	return slices.Compare(s.version[:], []int{major, minor, patch}) >= 0
}

// supportsSplitLargeEvent reports whether $changeStreamSplitLargeEvent
// exists: "New in version 7.0 (and 6.0.9)"
// (https://www.mongodb.com/docs/manual/reference/operator/aggregation/changeStreamSplitLargeEvent/).
func (s *Server) supportsSplitLargeEvent() bool {
	if s.version[0] == 6 && s.version[1] == 0 {
		return s.atLeast(6, 0, 9)
	}
	return s.atLeast(7, 0, 0)
}

// Size limits of change events, from the server source:
//
//   - maxEventSize: an event is serialized with Document::toBson, whose
//     default size trait is BSONObjMaxInternalSize = BSONObjMaxUserSize +
//     16 KiB (src/mongo/bson/bsonobj.h, DefaultSizeTrait;
//     src/mongo/bson/util/builder.h). A larger event fails the aggregate or
//     getMore with BSONObjectTooLarge (10334) in
//     PlanExecutorPipeline::_trySerializeToBson
//     (src/mongo/db/pipeline/plan_executor_pipeline.cpp), which rethrows it
//     unchanged: the error has no ResumableChangeStreamError label.
//   - maxSplitEventSize: with $changeStreamSplitLargeEvent, events larger
//     than kBSONObjMaxChangeEventSize = BSONObjMaxInternalSize - 8 KiB are
//     split (document_source_change_stream_split_large_event.h/.cpp).
const (
	maxEventSize      = maxBSONSize + 16*1024
	maxSplitEventSize = maxEventSize - 8*1024
	codeBSONTooLarge  = int32(10334)
	// codeSplitFragmentTooLarge is uassert 7182500 of splitChangeEvent
	// (src/mongo/db/pipeline/change_stream_split_event_helpers.cpp).
	codeSplitFragmentTooLarge = int32(7182500)
)

func init() {
	codeNames[codeBSONTooLarge] = "BSONObjectTooLarge"
	codeNames[codeSplitFragmentTooLarge] = "Location7182500"
	codeNames[7182800] = "Location7182800"
	codeNames[7182802] = "Location7182802"
	codeNames[codeNoMatchingDocument] = "NoMatchingDocument"
}

// parseSplitStage validates a $changeStreamSplitLargeEvent stage of the
// pipeline stages (stages[0] is $changeStream): the stage is unknown
// before 7.0/6.0.9 (the generic "Unrecognized pipeline stage name", 40324,
// of pipeline parsing), its spec must be an empty object (uassert 7182800
// in DocumentSourceChangeStreamSplitLargeEvent::createFromBson) and it must
// be the last stage (uassert 7182802 in validatePipelinePosition).
func (s *Server) parseSplitStage(st stage, stages []stage) error {
	if !s.supportsSplitLargeEvent() {
		return unrecognizedStage(st.name)
	}
	if d, ok := st.arg.DocumentOK(); !ok || len(d) != 5 {
		return newError(7182800, "$changeStreamSplitLargeEvent spec should be an empty object")
	}
	if stages[len(stages)-1].name != st.name || slices.IndexFunc(stages, func(x stage) bool { return x.name == st.name }) != len(stages)-1 {
		return newError(7182802, "$changeStreamSplitLargeEvent must be the last stage in the pipeline")
	}
	return nil
}

// fragment is one fragment of a split event waiting to be returned.
type fragment struct {
	doc bsoncore.Document
	tok resumeToken
}

// sizeEvent applies the size limit to an event after the user's stages
// (both the serialization check and the split stage run after them on
// mongod). tok is the event's resume token. It returns the documents to
// return, in order: the event itself, or its fragments minus those a
// resume from a fragment's token skips (c.skipFragments).
func (c *csCursor) sizeEvent(ev bsoncore.Document, tok resumeToken) ([]fragment, error) {
	skip := c.skipFragments
	c.skipFragments = 0
	if !c.split {
		if len(ev) > maxEventSize {
			// The message of BSONObj::_validateUnownedSize / the
			// serializer: "BSONObj size: N (0xN) is invalid. Size must be
			// between 0 and 16793600(16MB) First element: _id: ..."
			return nil, newError(codeBSONTooLarge, "Executor error during getMore :: caused by :: BSONObj size: %d (0x%X) is invalid. Size must be between 0 and %d(16MB) First element: _id: { _data: %q }",
				len(ev), len(ev), maxEventSize, tok.data())
		}
		return []fragment{{doc: ev, tok: tok}}, nil
	}
	if len(ev) <= maxSplitEventSize {
		if skip > 0 {
			// DocumentSourceChangeStreamSplitLargeEvent::_handleResumeAfterSplit.
			return nil, newError(codeChangeStreamFatal, "Attempted to resume from a split event fragment, but the event in the resumed stream was not large enough to be split")
		}
		return []fragment{{doc: ev, tok: tok}}, nil
	}
	frags, err := splitEvent(ev, tok)
	if err != nil {
		return nil, err
	}
	if skip >= len(frags) {
		return nil, newError(codeChangeStreamFatal, "Attempted to resume from a split event, but the resumed stream produced a different split. Ensure that the pipeline used to resume is the same as the original")
	}
	return frags[skip:], nil
}

// splitEvent splits ev as splitChangeEvent does
// (src/mongo/db/pipeline/change_stream_split_event_helpers.cpp): every
// top-level field but _id, ordered by (BSON element size, name), is packed
// greedily into fragments of at most kBSONObjMaxChangeEventSize minus the
// size of the resume token; each fragment starts with its own _id (the
// event's token with the fragment number) and splitEvent: {fragment: n,
// of: total}. A field that cannot fit alone fails with 7182500.
func splitEvent(ev bsoncore.Document, tok resumeToken) ([]fragment, error) {
	elems, err := ev.Elements()
	if err != nil {
		return nil, newError(1, "mongotest: malformed event: %v", err)
	}
	fields := make([]bsoncore.Element, 0, len(elems))
	for _, e := range elems {
		if e.Key() != "_id" {
			fields = append(fields, e)
		}
	}
	if len(fields) == 0 {
		return nil, newError(7182502, "Cannot split an empty event or an event containing solely '_id' field")
	}
	slices.SortStableFunc(fields, func(a, b bsoncore.Element) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a.Key(), b.Key())
	})
	maxFrag := maxSplitEventSize - len(tok.doc())
	type group struct{ fields []bsoncore.Element }
	var groups []group
	for i := 0; i < len(fields); {
		ft := tok
		ft.fragment = len(groups) + 1
		// The fragment's own fields, as the server measures them with its
		// metadata: _id, splitEvent {fragment, of: 0} and the $sortKey
		// metadata field (the same token).
		size := len(fragmentDoc(ft, len(groups)+1, 0, nil)) + len(bsoncore.AppendDocumentElement(nil, "$sortKey", ft.doc()))
		var g group
		for {
			g.fields = append(g.fields, fields[i])
			size += len(fields[i])
			i++
			if i >= len(fields) || size+len(fields[i]) > maxFrag {
				break
			}
		}
		if size > maxFrag {
			return nil, newError(codeSplitFragmentTooLarge, "Executor error during getMore :: caused by :: Splitting change event failed: fragment size %d is greater than maximum allowed fragment size %d", size, maxFrag)
		}
		groups = append(groups, g)
	}
	out := make([]fragment, len(groups))
	for n, g := range groups {
		ft := tok
		ft.fragment = n + 1
		out[n] = fragment{doc: fragmentDoc(ft, n+1, len(groups), g.fields), tok: ft}
	}
	return out, nil
}

func fragmentDoc(tok resumeToken, n, of int, fields []bsoncore.Element) bsoncore.Document {
	idx, d := bsoncore.AppendDocumentStart(nil)
	d = bsoncore.AppendDocumentElement(d, "_id", tok.doc())
	d = bsoncore.AppendDocumentElement(d, "splitEvent", bsoncore.BuildDocument(nil,
		bsoncore.AppendInt32Element(nil, "fragment", int32(n)),
		bsoncore.AppendInt32Element(nil, "of", int32(of))))
	for _, f := range fields {
		d = append(d, f...)
	}
	d, _ = bsoncore.AppendDocumentEnd(d, idx)
	return d
}

// takeFragment moves the next pending fragment of a split event into the
// batch if it fits in the 16 MB a batch may hold (a fragment always fits
// in an empty batch), as FindCommon::haveSpaceForNext lets getMore do. It
// reports whether it did. Caller holds s.mu.
func (c *csCursor) takeFragment(b *csBatch, size *int) bool {
	f := c.fragments[0]
	if len(b.events) > 0 && *size+len(f.doc) > maxBSONSize {
		return false
	}
	b.events = append(b.events, f.doc)
	*size += len(f.doc)
	c.last = f.tok
	c.fragments = c.fragments[1:]
	return true
}

// resumeFromFragment positions c, opened with the token of fragment
// t.fragment of a split event, to re-read that event and return the
// fragments after it: DocumentSourceChangeStreamSplitLargeEvent::create
// keeps the token's fragment number and _handleResumeAfterSplit skips the
// fragments before it, and the resume-token check then swallows the
// fragment the token names. Without the stage the token cannot be
// matched (ChangeStreamFatalError 280). Caller holds s.mu.
func (s *Server) resumeFromFragment(c *csCursor, t resumeToken) error {
	if !c.split {
		return newError(codeChangeStreamFatal, "Attempting to resume a change stream from a split event fragment, but the pipeline does not end with $changeStreamSplitLargeEvent")
	}
	if s.entry(t.seq) == nil {
		return historyLost(fmt.Sprintf("the event of resume token fragment %d at %d.%d is no longer in the oplog", t.fragment, t.ts.T, t.ts.I))
	}
	c.next = t.seq
	c.skipFragments = t.fragment
	c.last = t
	return nil
}
