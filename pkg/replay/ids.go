package replay

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/oplog"
	"github.com/amanat/cdc/pkg/report"
	"github.com/amanat/cdc/pkg/transform"
)

// RefreshConfig configures id replays.
type RefreshConfig struct {
	// Database is the source database.
	Database string
	// Streams names the stream and subjects.
	Streams bus.StreamsConfig
	// BatchSize is the ids per find.
	BatchSize int
	// DryRun reads but publishes and writes nothing.
	DryRun bool
}

// Refresher re-reads documents by id and publishes them as refresh (or
// delete) events.
type Refresher struct {
	client *mongo.Client
	js     jetstream.JetStream
	pool   *pgxpool.Pool
	set    *transform.Set
	cfg    RefreshConfig
	log    *zap.Logger
	pub    *bus.Publisher
}

// NewRefresher returns a Refresher. It does no I/O.
func NewRefresher(client *mongo.Client, js jetstream.JetStream, pool *pgxpool.Pool, set *transform.Set, cfg RefreshConfig, log *zap.Logger) *Refresher {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	return &Refresher{client: client, js: js, pool: pool, set: set, cfg: cfg, log: log, pub: bus.NewPublisher(js, cfg.Streams)}
}

// IDs refreshes the documents of coll named by keys: document keys as
// id_map and the dead letters print them, or as an operator writes them
// (event.ParseKey: 24 hex digits are an ObjectId, "..." a string,
// {"$numberLong":"7"} or any numeric Extended JSON the number, any other
// text that string).
func (r *Refresher) IDs(ctx context.Context, coll string, keys []string) (*report.Report, error) {
	rep := &report.Report{Command: "replay ids", DryRun: r.cfg.DryRun}
	_, err := r.Refresh(ctx, coll, keys, rep)
	return rep, err
}

// Refresh re-reads keys of coll from MongoDB and publishes, per key, a
// refresh event with the document (or a delete event if it no longer
// exists) at a majority cluster time taken just before the read of its
// chunk (see readChunk), counting into rep. Lost rows
// among them (see FindLost) have their versions forgotten first. It
// returns what each published event must become in Postgres.
func (r *Refresher) Refresh(ctx context.Context, coll string, keys []string, rep *report.Report) (map[DocRef]Awaited, error) {
	m, ok := r.set.Get(coll)
	if !ok {
		return nil, fmt.Errorf("replay ids: collection %q has no transform (mapped: %v)", coll, r.set.Collections())
	}
	keys, err := canonicalKeys(keys)
	if err != nil {
		return nil, fmt.Errorf("replay ids %s: %w", coll, err)
	}
	refs := make([]DocRef, len(keys))
	for i, k := range keys {
		refs[i] = DocRef{Collection: coll, Key: k}
	}
	if r.cfg.DryRun {
		lost, err := FindLost(ctx, r.pool, r.set, refs)
		if err != nil {
			return nil, err
		}
		rep.Note("%s: %d ids; %d of them have rows missing in Postgres (the refresh restores them)", coll, len(keys), len(lost))
	} else {
		lost, err := ForgetLost(ctx, r.pool, r.set, refs)
		if err != nil {
			return nil, err
		}
		if len(lost) > 0 {
			rep.Note("%s: %d rows were missing in Postgres; their version-guard entries were cleared so the refresh restores them", coll, len(lost))
		}
	}
	sess, err := r.client.StartSession(options.Session().SetCausalConsistency(true))
	if err != nil {
		return nil, fmt.Errorf("mongo session: %w", err)
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	c := r.client.Database(r.cfg.Database).Collection(coll, options.Collection().SetReadConcern(readconcern.Majority()))
	out := map[DocRef]Awaited{}
	var missing int
	for start := 0; start < len(keys); start += r.cfg.BatchSize {
		chunk := keys[start:min(start+r.cfg.BatchSize, len(keys))]
		evs, nMissing, err := r.readChunk(ctx, sess, c, m, chunk, rep)
		if err != nil {
			return out, err
		}
		missing += nMissing
		rep.Read += int64(len(chunk))
		rep.AddCollection(coll, int64(len(chunk)))
		if r.cfg.DryRun {
			continue
		}
		res, err := r.pub.PublishBatch(ctx, evs)
		if err != nil {
			rep.Errors += int64(len(evs))
			return out, err
		}
		rep.Published += int64(res.Stored)
		rep.Skipped += int64(res.Duplicates)
		for _, ev := range evs {
			key, err := ev.DocKey()
			if err != nil {
				return out, err
			}
			out[DocRef{Collection: coll, Key: key}] = Awaited{Position: ev.Position(), EventID: ev.ID}
		}
	}
	if missing > 0 {
		rep.Note("%s: %d ids no longer exist in MongoDB: published as deletes", coll, missing)
	}
	return out, nil
}

// readChunk reads one chunk of keys and builds their events.
func (r *Refresher) readChunk(ctx context.Context, sess *mongo.Session, c *mongo.Collection, m *transform.Mapping, keys []string, rep *report.Report) ([]*event.Event, int, error) {
	var cands bson.A
	first := map[string]bson.RawValue{}
	for _, k := range keys {
		vals, err := KeyCandidates(k)
		if err != nil {
			return nil, 0, err
		}
		first[k] = vals[0]
		for _, v := range vals {
			cands = append(cands, v)
		}
	}
	// The refresh position is a cluster time taken BEFORE the find, as
	// the snapshot takes its start time (oplog.MajorityTime: the
	// operationTime of a majority read in this causally consistent
	// session). Never the find's own operationTime: for a majority read
	// the server computes it after the command, as the last committed
	// (majority snapshot) optime (src/mongo/db/service_entry_point_common.cpp,
	// computeOperationTime; jstests/replsets/operation_time_read_and_write_concern.js),
	// so after a find over several batches it can be later than writes
	// the find did not see, and a refresh positioned there would beat
	// them in the version guard (a lost write; a "missing" document's
	// delete tombstoning a fresh insert).
	//
	// With at taken first: the driver sends the find with readConcern
	// {level: majority, afterClusterTime: at} (causal consistency,
	// x/mongo/driver/operation.go addReadConcern; the server waits until
	// its majority snapshot reaches at, src/mongo/db/read_concern_mongod.cpp;
	// https://www.mongodb.com/docs/manual/core/causal-consistency-read-write-concerns/),
	// so the find sees every write at or before at, and every write
	// after at reaches the sink from the tailer at a later position,
	// where it wins whether it is applied before or after the refresh. A
	// document the find does not return becomes a delete at at: an
	// insert after at, published by the tailer later, still wins.
	at, err := oplog.MajorityTime(ctx, r.client, sess, r.cfg.Database, m.Collection)
	if err != nil {
		return nil, 0, fmt.Errorf("refresh %s: cluster time before the read: %w", m.Collection, err)
	}
	found := map[string]bson.Raw{}
	err = mongo.WithSession(ctx, sess, func(sc context.Context) error {
		cur, err := c.Find(sc, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: cands}}}})
		if err != nil {
			return err
		}
		defer cur.Close(context.WithoutCancel(ctx))
		for cur.Next(sc) {
			doc := append(bson.Raw(nil), cur.Current...)
			id := doc.Lookup("_id")
			found[event.KeyString(id)] = doc
		}
		return cur.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", m.Collection, err)
	}
	var evs []*event.Event
	missing := 0
	for _, k := range keys {
		if doc, ok := found[k]; ok {
			evs = append(evs, event.FromDocument(event.OpRefresh, r.cfg.Database, m.Collection, doc.Lookup("_id"), doc, at))
			continue
		}
		missing++
		if m.AppendOnly {
			rep.Errors++
			rep.Note("%s %s: not in MongoDB, but %s is append-only: not publishing a delete (investigate by hand)", m.Collection, k, m.Collection)
			continue
		}
		evs = append(evs, event.FromDocument(event.OpDelete, r.cfg.Database, m.Collection, first[k], nil, at))
	}
	return evs, missing, nil
}

// canonicalKeys returns keys in the form the bookkeeping tables store
// (event.CanonicalKey: an upper-case ObjectId in lower case,
// {"$numberInt":"7"} as {"$numberLong":"7"}), sorted and without
// duplicates, so that the version guard, the lost-row checks and the
// match with the documents read all use one key per document. A key that
// names no _id is an error.
func canonicalKeys(keys []string) ([]string, error) {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		c, err := event.CanonicalKey(k)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return slices.Compact(slices.Sorted(slices.Values(out))), nil
}
