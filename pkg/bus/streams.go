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

// Ensure declares (creates or updates) the change stream, the dead-letter
// stream, the checkpoint bucket and the large-event object store
// (LargeBucket, see large.go). It is idempotent.
func Ensure(ctx context.Context, js jetstream.JetStream, c StreamsConfig) error {
	maxBytes := c.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "CDC change events (MongoDB change stream -> Postgres sink)",
		Subjects:    []string{c.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		// A full stream refuses new events (the tailer retries from its
		// checkpoint; MongoDB's oplog is the buffer) instead of discarding
		// the oldest, which the sink may not have applied. Age still
		// removes messages whatever the policy: the sink stops on any gap.
		Discard:    jetstream.DiscardNew,
		MaxAge:     c.MaxAge,
		MaxBytes:   maxBytes,
		Duplicates: c.DedupWindow,
		Replicas:   c.Replicas,
		MaxMsgSize: -1,
	})
	if err != nil {
		return fmt.Errorf("declare stream %s: %w", c.Stream, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
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
