package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
)

// ProgressVersion is the persisted progress format version.
const ProgressVersion = 1

// Progress is a snapshot's durable state: its start time and, per
// collection in scan order, the last _id whose event JetStream
// acknowledged. A crash or Ctrl-C resumes from there with the same start
// time (so the re-published tail of the last batch has the same ids and is
// dropped by JetStream's dedup window).
type Progress struct {
	V int `json:"v"`
	// Database is the source database.
	Database string `json:"database"`
	// ClusterTime is the snapshot's start time T: every event of this
	// snapshot carries it, and streaming covers every change from it on.
	ClusterTime event.ClusterTime `json:"cluster_time"`
	// Handoff says how streaming was made to cover T.
	Handoff string `json:"handoff"`
	// Collections in scan order (parents first).
	Collections []CollectionProgress `json:"collections"`
	// Runs counts the runs that worked on this snapshot (1 + resumes).
	Runs      int       `json:"runs"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Complete is set when every collection is done.
	Complete bool `json:"complete"`
}

// CollectionProgress is one collection's scan position.
type CollectionProgress struct {
	Name string `json:"name"`
	// LastID is the last document key done, {"_id": ...} as canonical
	// Extended JSON; absent before the first batch.
	LastID json.RawMessage `json:"last_id,omitempty"`
	// Done counts documents published (acknowledged), over all runs.
	Done int64 `json:"done"`
	// Total is the collection's document count when its scan (last)
	// started; for the progress display only.
	Total int64 `json:"total"`
	// Complete is set when the scan reached the end of the collection.
	Complete bool `json:"complete"`
}

// Names lists the collections in scan order.
func (p *Progress) Names() []string {
	out := make([]string, len(p.Collections))
	for i, c := range p.Collections {
		out[i] = c.Name
	}
	return out
}

// lastID decodes LastID; ok is false before the first batch.
func (c *CollectionProgress) lastID() (bson.RawValue, bool, error) {
	if len(c.LastID) == 0 {
		return bson.RawValue{}, false, nil
	}
	var d bson.Raw
	if err := bson.UnmarshalExtJSON(c.LastID, true, &d); err != nil {
		return bson.RawValue{}, false, fmt.Errorf("progress of %s: last_id: %w", c.Name, err)
	}
	v, err := d.LookupErr("_id")
	if err != nil {
		return bson.RawValue{}, false, fmt.Errorf("progress of %s: last_id without _id", c.Name)
	}
	return v, true, nil
}

// DecodeProgress parses and validates a stored record.
func DecodeProgress(b []byte) (*Progress, error) {
	var p Progress
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode snapshot progress: %w", err)
	}
	if p.V != ProgressVersion {
		return nil, fmt.Errorf("snapshot progress version %d is not %d (written by another build?)", p.V, ProgressVersion)
	}
	if p.Database == "" || len(p.Collections) == 0 {
		return nil, errors.New("snapshot progress without database or collections")
	}
	return &p, nil
}

// ProgressKey is the KV key of database db's snapshot progress. Characters
// KV keys do not allow are escaped as =XX.
func ProgressKey(db string) string {
	var b strings.Builder
	b.WriteString("snapshot.")
	for i := 0; i < len(db); i++ {
		ch := db[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '_', ch == '-':
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, "=%02X", ch)
		}
	}
	return b.String()
}

// progressStore keeps one database's record with optimistic concurrency:
// every write names the revision it read, so two snapshot runs on one
// database cannot silently interleave.
type progressStore struct {
	kv  jetstream.KeyValue
	key string
	rev uint64
}

// OpenProgressBucket declares (create or update) the progress bucket.
func OpenProgressBucket(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "CDC snapshot progress (start cluster time, last _id done per collection)",
		History:     8,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("declare snapshot progress bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// LoadProgress reads database db's record from kv; nil when there is none.
func LoadProgress(ctx context.Context, kv jetstream.KeyValue, db string) (*Progress, error) {
	s := &progressStore{kv: kv, key: ProgressKey(db)}
	return s.load(ctx)
}

func (s *progressStore) load(ctx context.Context) (*Progress, error) {
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		s.rev = 0
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load snapshot progress %s: %w", s.key, err)
	}
	s.rev = e.Revision()
	return DecodeProgress(e.Value())
}

func (s *progressStore) save(ctx context.Context, p *Progress) error {
	p.UpdatedAt = time.Now().UTC()
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode snapshot progress: %w", err)
	}
	var rev uint64
	if s.rev == 0 {
		rev, err = s.kv.Create(ctx, s.key, b)
	} else {
		rev, err = s.kv.Update(ctx, s.key, b, s.rev)
	}
	// A stale revision, by the library's sentinels (JetStream API error
	// 10071, or 10164 on a replicated stream), never by message text.
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%w: the progress record %s changed under this run: is another `cdc snapshot` running on database %s?",
			ErrConcurrent, s.key, p.Database)
	}
	if err != nil {
		return fmt.Errorf("save snapshot progress %s: %w", s.key, err)
	}
	s.rev = rev
	return nil
}
