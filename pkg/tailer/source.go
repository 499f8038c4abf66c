package tailer

import (
	"context"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/event"
)

// FullDocumentMode is how change events carry the document
// (tailer.full_document); see
// https://www.mongodb.com/docs/manual/reference/operator/aggregation/changeStream/.
type FullDocumentMode string

const (
	// FullDocumentPostImage requests fullDocument: "required": every
	// update carries the document as it was right after that update (the
	// stored post-image, computed from the pre-image and the update), or
	// the stream fails with NoMatchingDocument (47). Needs
	// changeStreamPreAndPostImages on the collection (MongoDB 6.0+).
	FullDocumentPostImage FullDocumentMode = "post_image"
	// FullDocumentWhenAvailable requests fullDocument: "whenAvailable":
	// the post-image, or null when it is missing. Needs the option too.
	FullDocumentWhenAvailable FullDocumentMode = "when_available"
	// FullDocumentUpdateLookup requests fullDocument: "updateLookup": the
	// document's current majority-committed version when the event is
	// read (possibly later than the change, or null), not its state after
	// the change.
	FullDocumentUpdateLookup FullDocumentMode = "update_lookup"
)

// option is the driver's value for m; "" is update_lookup (the behaviour
// before point-in-time documents; config defaults to post_image).
func (m FullDocumentMode) option() options.FullDocument {
	switch m {
	case FullDocumentPostImage:
		return options.Required
	case FullDocumentWhenAvailable:
		return options.WhenAvailable
	}
	return options.UpdateLookup
}

// needsImages reports whether m reads stored post-images.
func (m FullDocumentMode) needsImages() bool {
	return m == FullDocumentPostImage || m == FullDocumentWhenAvailable
}

// source is what the preflight learned about the server.
type source struct {
	// version is buildInfo's version string.
	version string
	// split says the server has $changeStreamSplitLargeEvent.
	split bool
}

// preflight checks the source before a change stream is opened: a
// replica set (not mongos, not a standalone), its version (whether large
// events can be split), and the collections' pre- and post-image option
// when the configured mode needs it. Refusals are fatal (*TopologyError,
// *ImagesError); other errors (unreachable) are retried.
func (t *Tailer) preflight(ctx context.Context) (source, error) {
	admin := t.client.Database("admin")
	// hello: a mongos answers msg "isdbgrid"; a replica-set member has
	// setName; a standalone has neither
	// (https://www.mongodb.com/docs/manual/reference/command/hello/).
	var hello struct {
		Msg     string `bson:"msg"`
		SetName string `bson:"setName"`
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return source{}, fmt.Errorf("hello: %w", err)
	}
	switch {
	case hello.Msg == "isdbgrid":
		return source{}, &TopologyError{Kind: "mongos"}
	case hello.SetName == "":
		return source{}, &TopologyError{Kind: "standalone"}
	}
	var bi struct {
		Version      string  `bson:"version"`
		VersionArray []int32 `bson:"versionArray"`
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&bi); err != nil {
		return source{}, fmt.Errorf("buildInfo: %w", err)
	}
	src := source{version: bi.Version, split: splitSupported(bi.VersionArray)}
	if t.cfg.FullDocument.needsImages() || t.cfg.PreImages {
		if err := t.checkImages(ctx); err != nil {
			return source{}, err
		}
	}
	return src, nil
}

// splitSupported reports whether a server of buildInfo versionArray v has
// $changeStreamSplitLargeEvent: "New in MongoDB 7.0 (and 6.0.9)"
// (https://www.mongodb.com/docs/manual/reference/operator/aggregation/changeStreamSplitLargeEvent/).
// The 6.1–6.3 rapid releases are not listed and are treated as without.
func splitSupported(v []int32) bool {
	if len(v) < 3 {
		return false
	}
	major, minor, patch := v[0], v[1], v[2]
	return major >= 7 || (major == 6 && minor == 0 && patch >= 9)
}

// checkImages refuses to start when a replicated collection does not have
// changeStreamPreAndPostImages enabled (collMod or create option; listed
// in listCollections' options,
// https://www.mongodb.com/docs/manual/reference/command/collMod/#change-streams-with-document-pre--and-post-images).
func (t *Tailer) checkImages(ctx context.Context) error {
	db := t.client.Database(t.cfg.Database)
	cur, err := db.ListCollections(ctx, bson.D{{Key: "name", Value: bson.D{{Key: "$in", Value: t.cfg.Collections}}}})
	if err != nil {
		return fmt.Errorf("listCollections on %s: %w", t.cfg.Database, err)
	}
	defer cur.Close(ctx)
	enabled := map[string]bool{}
	for cur.Next(ctx) {
		name, _ := cur.Current.Lookup("name").StringValueOK()
		on, _ := cur.Current.Lookup("options", "changeStreamPreAndPostImages", "enabled").BooleanOK()
		enabled[name] = on
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("listCollections on %s: %w", t.cfg.Database, err)
	}
	field := "tailer.full_document"
	if !t.cfg.FullDocument.needsImages() {
		field = "tailer.pre_images"
	}
	ie := &ImagesError{Database: t.cfg.Database, Field: field}
	for _, c := range t.cfg.Collections {
		on, exists := enabled[c]
		switch {
		case !exists:
			ie.Absent = append(ie.Absent, c)
		case !on:
			ie.Missing = append(ie.Missing, c)
		}
	}
	if len(ie.Absent) > 0 {
		// Not a refusal: a dropped collection must reach its lifecycle
		// stop (which names the recovery), and a collection that does
		// not exist yet has no events. Created later without the option,
		// its first update fails the stream with NoMatchingDocument (47),
		// which is fatal and names the collMod.
		t.log.Warn("replicated collections do not exist: create them with changeStreamPreAndPostImages enabled",
			zap.String("database", t.cfg.Database), zap.Strings("collections", ie.Absent), zap.String("needed_by", field))
	}
	if len(ie.Missing) > 0 {
		ie.Absent = nil
		return ie
	}
	return nil
}

// tooLargeKey names the document of the first replicated change after ct
// from the oplog (best effort: "" when it cannot tell). The event that
// failed with 10334 is the first replicated change after the checkpoint;
// its oplog entry (op i/u/d on ns "<db>.<coll>", or inside an applyOps of
// a transaction) has the key in o2 (updates) or o (inserts, deletes).
func (t *Tailer) tooLargeKey(ctx context.Context, ct event.ClusterTime) string {
	nss := make([]string, len(t.cfg.Collections))
	for i, c := range t.cfg.Collections {
		nss[i] = t.cfg.Database + "." + c
	}
	filter := bson.D{
		{Key: "ts", Value: bson.D{{Key: "$gt", Value: ct.Timestamp()}}},
		{Key: "$or", Value: bson.A{
			bson.D{{Key: "ns", Value: bson.D{{Key: "$in", Value: nss}}}, {Key: "op", Value: bson.D{{Key: "$in", Value: bson.A{"i", "u", "d"}}}}},
			bson.D{{Key: "op", Value: "c"}, {Key: "o.applyOps.ns", Value: bson.D{{Key: "$in", Value: nss}}}},
		}},
	}
	var entry bson.Raw
	err := t.client.Database("local").Collection("oplog.rs").FindOne(ctx, filter, options.FindOne().SetSort(bson.D{{Key: "$natural", Value: 1}})).Decode(&entry)
	if err != nil {
		return ""
	}
	return oplogKey(entry, nss)
}

// oplogKey renders the document key of a CRUD oplog entry, or of the first
// replicated operation of an applyOps entry, as "<ns> _id <value>".
func oplogKey(entry bson.Raw, nss []string) string {
	if ops, ok := entry.Lookup("o", "applyOps").ArrayOK(); ok {
		vals, _ := ops.Values()
		for _, v := range vals {
			if d, ok := v.DocumentOK(); ok {
				if ns, _ := d.Lookup("ns").StringValueOK(); slices.Contains(nss, ns) {
					return oplogKey(d, nss)
				}
			}
		}
		return ""
	}
	ns, _ := entry.Lookup("ns").StringValueOK()
	id := entry.Lookup("o2", "_id")
	if id.Type == 0 {
		id = entry.Lookup("o", "_id")
	}
	if id.Type == 0 {
		return ""
	}
	return fmt.Sprintf("%s _id %s", ns, id.String())
}
