package mongotest

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Collection-level pre- and post-images, as MongoDB 6.0+ has them
// (https://www.mongodb.com/docs/manual/changeStreams/#change-streams-with-document-pre--and-post-images):
//
//   - create {changeStreamPreAndPostImages: {enabled: true}} or collMod
//     with the same option turns them on for a collection (listCollections
//     reports it in options); collMod {enabled: false} turns them off.
//   - Only writes made while they are on record a pre-image (the op
//     observer writes config.system.preimages when the collection has the
//     option, op_observer_impl.cpp); the post-image of an update is
//     computed from that pre-image and the oplog's diff
//     (DocumentSourceChangeStreamAddPostImage::generatePostImage), so it
//     exists exactly when the pre-image does.
//   - fullDocumentBeforeChange / fullDocument "whenAvailable" return null
//     when the image does not exist; "required" fails the aggregate or
//     getMore with NoMatchingDocument (47), raised by
//     document_source_change_stream_add_pre_image.cpp (pre-image, checked
//     first in the pipeline) and document_source_change_stream_add_post_image.cpp.
//   - fullDocument "updateLookup" is unaffected: it reads the current
//     document when the event is returned (lookupLatestPostImage).
//
// The emulator keeps every image in the oplog entry (oplogEntry.pre/post)
// and marks at write time whether the collection had the option
// (oplogEntry.imaged). It does not emulate the pre-image collection's
// expiry (expireAfterSeconds) or its removal with the oplog window.

const codeNoMatchingDocument = int32(47)

// imagesEnabled reports whether the collection with this UUID has
// changeStreamPreAndPostImages enabled. Caller holds s.mu.
func (s *Server) imagesEnabled(uuid []byte) bool {
	return len(uuid) > 0 && s.images[string(uuid)]
}

// setImages records the option for a collection. Caller holds s.mu.
func (s *Server) setImages(uuid []byte, enabled bool) {
	if s.images == nil {
		s.images = make(map[string]bool)
	}
	if enabled {
		s.images[string(uuid)] = true
	} else {
		delete(s.images, string(uuid))
	}
}

// parseImagesOption reads changeStreamPreAndPostImages: {enabled: bool}
// from a create or collMod command; absent means false for create.
func parseImagesOption(r *request) (bool, error) {
	v, ok := r.arg("changeStreamPreAndPostImages")
	if !ok {
		return false, nil
	}
	d, ok := v.DocumentOK()
	if !ok {
		return false, newError(codeTypeMismatch, "BSON field '%s.changeStreamPreAndPostImages' is the wrong type '%s', expected type 'object'", r.cmd, typeName(v.Type))
	}
	ev, err := d.LookupErr("enabled")
	if err != nil {
		// The IDL struct ChangeStreamPreAndPostImagesOptions has a
		// required 'enabled' field.
		return false, newError(40414, "BSON field '%s.changeStreamPreAndPostImages.enabled' is missing but a required field", r.cmd)
	}
	if ev.Type != bsoncore.TypeBoolean {
		return false, newError(codeTypeMismatch, "BSON field '%s.changeStreamPreAndPostImages.enabled' is the wrong type '%s', expected type 'bool'", r.cmd, typeName(ev.Type))
	}
	return ev.Boolean(), nil
}

func init() { codeNames[40414] = "Location40414" }

// collectionOptions is listCollections' options for a collection.
// Caller holds s.mu.
func (s *Server) collectionOptions(uuid []byte) bson.D {
	if !s.imagesEnabled(uuid) {
		return bson.D{}
	}
	return bson.D{{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}}
}

// cmdCollMod supports the one option the emulator knows,
// changeStreamPreAndPostImages; any other option is refused
// (InvalidOptions 72) rather than ignored. The reply of mongod 7.0 for
// such a change is {ok: 1} (the old/new values are reported only for
// index and validator changes).
func (s *Server) cmdCollMod(r *request) (bson.D, error) {
	ns, err := r.ns()
	if err != nil {
		return nil, err
	}
	if err := checkWritable(ns); err != nil {
		return nil, err
	}
	elems, _ := r.body.Elements()
	for _, e := range elems[1:] {
		switch e.Key() {
		case "changeStreamPreAndPostImages", "$db", "lsid", "$clusterTime", "writeConcern", "comment", "$readPreference", "txnNumber", "maxTimeMS", "apiVersion", "apiStrict", "apiDeprecationErrors":
		default:
			return nil, newError(72, "mongotest: collMod option %q is not supported (only changeStreamPreAndPostImages)", e.Key())
		}
	}
	c := s.coll(ns)
	if c == nil {
		return nil, newError(codeNamespaceNotFound, "ns does not exist: %s", ns)
	}
	if _, ok := r.arg("changeStreamPreAndPostImages"); !ok {
		return bson.D{}, nil
	}
	enabled, err := parseImagesOption(r)
	if err != nil {
		return nil, err
	}
	s.setImages(c.uuid, enabled)
	return bson.D{}, nil
}

// checkImages fails the event of e when the stream requires an image the
// write did not record, pre-image first as the server's pipeline orders
// the stages.
func (c *csCursor) checkImages(e *oplogEntry) error {
	if e.imaged {
		return nil
	}
	switch {
	case c.before == "required" && (e.kind == opUpdate || e.kind == opReplace || e.kind == opDelete):
		return newError(codeNoMatchingDocument, "Executor error during getMore :: caused by :: Change stream was configured to require a pre-image for all update, delete and replace events, but the pre-image was not found for event: %s", imageErrEvent(e))
	case c.fullDoc == "required" && e.kind == opUpdate:
		return newError(codeNoMatchingDocument, "Executor error during getMore :: caused by :: Change stream was configured to require a post-image for all update events, but the post-image was not found for event: %s", imageErrEvent(e))
	}
	return nil
}

// imageErrEvent is makePreImageNotFoundErrorMsg's description of the event.
func imageErrEvent(e *oplogEntry) string {
	s := fmt.Sprintf("{operationType: %q, ns: {db: %q, coll: %q}, clusterTime: Timestamp(%d, %d)", opTypeNames[e.kind], e.db, e.coll, e.ts.T, e.ts.I)
	if e.inTxn {
		s += fmt.Sprintf(", txnNumber: %d", e.txnNumber)
	}
	return s + "}"
}

// appendImage appends the image as field key, or null when the write did
// not record images ("Even if no pre-image was found, we have to populate
// the field", add_pre_image.cpp / add_post_image.cpp).
func appendImage(d []byte, key string, e *oplogEntry, img bsoncore.Document) []byte {
	if !e.imaged || img == nil {
		return bsoncore.AppendNullElement(d, key)
	}
	return bsoncore.AppendDocumentElement(d, key, img)
}
