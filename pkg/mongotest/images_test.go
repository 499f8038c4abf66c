package mongotest

import (
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

var imagesOn = bson.D{{Key: "enabled", Value: true}}

// collOptions returns listCollections' options of d.<name>.
func collOptions(t *testing.T, c *mongo.Client, name string) bson.Raw {
	t.Helper()
	specs, err := c.Database("d").ListCollectionSpecifications(testCtx(t), bson.D{{Key: "name", Value: name}})
	if err != nil || len(specs) != 1 {
		t.Fatalf("listCollections %s: %v (%d specs)", name, err, len(specs))
	}
	return specs[0].Options
}

// TestImagesConfiguration: create and collMod set
// changeStreamPreAndPostImages and listCollections reports it.
func TestImagesConfiguration(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	db := c.Database("d")
	if err := db.CreateCollection(ctx, "on", options.CreateCollection().SetChangeStreamPreAndPostImages(imagesOn)); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateCollection(ctx, "off"); err != nil {
		t.Fatal(err)
	}
	if v, err := collOptions(t, c, "on").LookupErr("changeStreamPreAndPostImages", "enabled"); err != nil || !v.Boolean() {
		t.Fatalf("created with images: options %v", collOptions(t, c, "on"))
	}
	if _, err := collOptions(t, c, "off").LookupErr("changeStreamPreAndPostImages"); err == nil {
		t.Fatalf("created without images: options %v", collOptions(t, c, "off"))
	}
	collMod := func(name string, enabled bool) error {
		return db.RunCommand(ctx, bson.D{{Key: "collMod", Value: name},
			{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: enabled}}}}).Err()
	}
	if err := collMod("off", true); err != nil {
		t.Fatal(err)
	}
	if v, err := collOptions(t, c, "off").LookupErr("changeStreamPreAndPostImages", "enabled"); err != nil || !v.Boolean() {
		t.Fatalf("after collMod enabled: options %v", collOptions(t, c, "off"))
	}
	if err := collMod("on", false); err != nil {
		t.Fatal(err)
	}
	if _, err := collOptions(t, c, "on").LookupErr("changeStreamPreAndPostImages"); err == nil {
		t.Fatalf("after collMod disabled: options %v", collOptions(t, c, "on"))
	}
	var ce mongo.CommandError
	if err := collMod("missing", true); !errors.As(err, &ce) || ce.Code != codeNamespaceNotFound {
		t.Fatalf("collMod of a missing collection: %v, want NamespaceNotFound", err)
	}
	err := db.RunCommand(ctx, bson.D{{Key: "collMod", Value: "on"}, {Key: "validator", Value: bson.D{}}}).Err()
	if !errors.As(err, &ce) || ce.Code != 72 {
		t.Fatalf("collMod with an unsupported option: %v, want InvalidOptions (refused, not ignored)", err)
	}
}

// TestImagesModes: what each fullDocument / fullDocumentBeforeChange mode
// gives for an update and a delete, on a collection with and without
// images.
func TestImagesModes(t *testing.T) {
	tests := []struct {
		name             string
		images           bool
		fullDoc, before  options.FullDocument
		wantCode         int32 // 0: no error
		wantPost, wantPr any   // fullDocument.v / fullDocumentBeforeChange.v of the update; nil: null
	}{
		{"off/whenAvailable", false, options.WhenAvailable, options.WhenAvailable, 0, nil, nil},
		{"off/required post", false, options.Required, "", codeNoMatchingDocument, nil, nil},
		{"off/required pre", false, options.Default, options.Required, codeNoMatchingDocument, nil, nil},
		{"on/whenAvailable", true, options.WhenAvailable, options.WhenAvailable, 0, int32(2), int32(1)},
		{"on/required", true, options.Required, options.Required, 0, int32(2), int32(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t)
			c := connect(t, s)
			ctx := testCtx(t)
			co := options.CreateCollection()
			if tt.images {
				co.SetChangeStreamPreAndPostImages(imagesOn)
			}
			if err := c.Database("d").CreateCollection(ctx, "c", co); err != nil {
				t.Fatal(err)
			}
			coll := c.Database("d").Collection("c")
			o := options.ChangeStream().SetMaxAwaitTime(50 * time.Millisecond)
			if tt.fullDoc != "" {
				o.SetFullDocument(tt.fullDoc)
			}
			if tt.before != "" {
				o.SetFullDocumentBeforeChange(tt.before)
			}
			cs, err := coll.Watch(ctx, mongo.Pipeline{}, o)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close(ctx)
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}); err != nil {
				t.Fatal(err)
			}
			if _, err := coll.UpdateByID(ctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 2}}}}); err != nil {
				t.Fatal(err)
			}
			if tt.wantCode != 0 {
				// The failing event fails its whole batch, which may
				// hold the insert too (as a getMore on mongod does).
				for cs.Next(ctx) {
					if op := cs.Current.Lookup("operationType").StringValue(); op != "insert" {
						t.Fatalf("got %v, want error %d", cs.Current, tt.wantCode)
					}
				}
				var se mongo.ServerError
				if !errors.As(cs.Err(), &se) || !se.HasErrorCode(int(tt.wantCode)) || se.HasErrorLabel("ResumableChangeStreamError") {
					t.Fatalf("error %v, want code %d without a resumable label", cs.Err(), tt.wantCode)
				}
				return
			}
			next(t, cs, 5*time.Second) // the insert needs no image
			u := next(t, cs, 5*time.Second)
			for _, f := range []struct {
				field string
				want  any
			}{{"fullDocument", tt.wantPost}, {"fullDocumentBeforeChange", tt.wantPr}} {
				v, err := u.raw.LookupErr(f.field)
				if err != nil {
					t.Fatalf("%s missing in %v", f.field, u.raw)
				}
				if f.want == nil {
					if v.Type != bson.TypeNull {
						t.Fatalf("%s = %v, want null", f.field, v)
					}
					continue
				}
				if got := v.Document().Lookup("v").Int32(); got != f.want {
					t.Fatalf("%s.v = %d, want %v", f.field, got, f.want)
				}
			}
		})
	}
}

// TestImagesOnlyWhileEnabled: writes made before collMod enabled images
// have none; writes after have them.
func TestImagesOnlyWhileEnabled(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	coll := c.Database("d").Collection("c")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().
		SetFullDocument(options.WhenAvailable).SetFullDocumentBeforeChange(options.WhenAvailable))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateByID(ctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 2}}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Database("d").RunCommand(ctx, bson.D{{Key: "collMod", Value: "c"}, {Key: "changeStreamPreAndPostImages", Value: imagesOn}}).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateByID(ctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 3}}}}); err != nil {
		t.Fatal(err)
	}
	next(t, cs, 5*time.Second)
	before := next(t, cs, 5*time.Second)
	if before.raw.Lookup("fullDocument").Type != bson.TypeNull || before.raw.Lookup("fullDocumentBeforeChange").Type != bson.TypeNull {
		t.Fatalf("update before collMod has images: %v", before.raw)
	}
	after := next(t, cs, 5*time.Second)
	if after.FullDocument["v"] != int32(3) || after.raw.Lookup("fullDocumentBeforeChange", "v").Int32() != 2 {
		t.Fatalf("update after collMod: %v, want post v=3, pre v=2", after.raw)
	}
}

// TestUpdateLookupIsCurrent: updateLookup returns the document as it is
// when the event is read (a later write shows), the post-image the state
// right after the write.
func TestUpdateLookupIsCurrent(t *testing.T) {
	s := startServer(t)
	c := connect(t, s)
	ctx := testCtx(t)
	if err := c.Database("d").CreateCollection(ctx, "c", options.CreateCollection().SetChangeStreamPreAndPostImages(imagesOn)); err != nil {
		t.Fatal(err)
	}
	coll := c.Database("d").Collection("c")
	watch := func(mode options.FullDocument) *mongo.ChangeStream {
		cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(mode))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.Close(ctx) })
		return cs
	}
	lookup, post := watch(options.UpdateLookup), watch(options.Required)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int32{2, 3} {
		if _, err := coll.UpdateByID(ctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: v}}}}); err != nil {
			t.Fatal(err)
		}
	}
	next(t, lookup, 5*time.Second)
	next(t, post, 5*time.Second)
	if got := next(t, lookup, 5*time.Second).FullDocument["v"]; got != int32(3) {
		t.Fatalf("updateLookup of the first update: v=%v, want the current 3", got)
	}
	if got := next(t, post, 5*time.Second).FullDocument["v"]; got != int32(2) {
		t.Fatalf("post-image of the first update: v=%v, want 2", got)
	}
}
