package bus

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamsConfig describes the streams the program declares.
type StreamsConfig struct {
	// Stream holds change events on subjects <SubjectPrefix>.>.
	Stream        string
	SubjectPrefix string
	// DLQStream holds dead letters on subjects <SubjectPrefix>_dlq.>.
	DLQStream string
	Replicas  int
	// DedupWindow is the Nats-Msg-Id duplicate window.
	DedupWindow time.Duration
	MaxAge      time.Duration
	// MaxBytes caps the change stream; -1 unlimited.
	MaxBytes int64
	// CheckpointBucket is the KV bucket for tailer checkpoints.
	CheckpointBucket string
	// Lanes split the change stream into one stream per lane (lanes.go);
	// empty: the one stream Stream. Set with WithLanes.
	Lanes []Lane
	// laneOf maps a collection to its lane (built by WithLanes).
	laneOf map[string]*laneGroup
}

// Subject is the subject of a change event of db.coll. Tokens are escaped
// so a collection name with '.', '*', '>' or spaces stays one token.
func (c StreamsConfig) Subject(db, coll string) string {
	return c.SubjectPrefix + "." + escapeToken(db) + "." + escapeToken(coll)
}

// DLQSubject is the dead-letter subject of db.coll.
func (c StreamsConfig) DLQSubject(db, coll string) string {
	return c.SubjectPrefix + "_dlq." + escapeToken(db) + "." + escapeToken(coll)
}

func escapeToken(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '_', ch == '-':
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, "~%02X", ch)
		}
	}
	return b.String()
}

// Ensure declares (creates or updates) the change stream (one per lane
// when lanes are configured), the dead-letter
// stream, the checkpoint bucket and the large-event object store
// (LargeBucket, see large.go). It is idempotent.
func Ensure(ctx context.Context, js jetstream.JetStream, c StreamsConfig) error {
	// The change stream, or one per lane (lanes.go).
	if err := ensureChangeStreams(ctx, js, c); err != nil {
		return err
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.DLQStream,
		Description: "CDC dead letters: events the sink could not apply, with the reason",
		Subjects:    []string{c.SubjectPrefix + "_dlq.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      0, // dead letters stay until an operator resolves them
		Duplicates:  c.DedupWindow,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("declare stream %s: %w", c.DLQStream, err)
	}
	_, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      c.CheckpointBucket,
		Description: "CDC tailer checkpoints (resume tokens)",
		History:     16,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("declare checkpoint bucket %s: %w", c.CheckpointBucket, err)
	}
	return ensureLarge(ctx, js, c)
}
