package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrCodeStreamStoreFailed is nats-server's JSStreamStoreFailedF (JetStream
// API error code 10077): the stream refused to store a published message.
// With the discard policy new it is the server's answer to a publish that
// would exceed the stream's max_bytes or max_msgs (server/stream.go,
// processJetStreamMsg, from the store's ErrMaxBytes / ErrMaxMsgs; for a
// clustered stream the leader's pre-check in jetstream_batching.go). The
// same code also covers a message too large for the store and a store that
// is closing, which is why ClassifyPublishError confirms a refusal against
// the stream's state before calling it full.
const ErrCodeStreamStoreFailed jetstream.ErrorCode = 10077

// ErrStreamFull means a publish was refused because the stream holds as
// much as its max_bytes or max_msgs allow (discard policy new). Nothing was
// stored and nothing was discarded: retry once space is freed (TrimApplied)
// or the limit is raised.
var ErrStreamFull = errors.New("stream is full")

// StreamFullError is a publish refused by a full stream, with the limits
// and the state the stream reported just after the refusal.
// errors.Is(err, ErrStreamFull) holds, and the server's *jetstream.APIError
// stays reachable through errors.As.
type StreamFullError struct {
	Stream string
	// MaxBytes and MaxMsgs are the stream's limits (-1 or 0: none).
	MaxBytes, MaxMsgs int64
	// Bytes and Msgs are what the stream held.
	Bytes, Msgs uint64
	// Err is the server's refusal.
	Err error
}

func (e *StreamFullError) Error() string {
	return fmt.Sprintf("%v: stream %s holds %d messages, %d bytes (max_msgs=%d, max_bytes=%d): %v",
		ErrStreamFull, e.Stream, e.Msgs, e.Bytes, e.MaxMsgs, e.MaxBytes, e.Err)
}

// Unwrap returns ErrStreamFull and the server's error.
func (e *StreamFullError) Unwrap() []error { return []error{ErrStreamFull, e.Err} }

// IsStoreRefusal reports whether err carries JetStream API error code
// ErrCodeStreamStoreFailed (10077). It classifies by code, never by text.
func IsStoreRefusal(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == ErrCodeStreamStoreFailed
}

// storeOverhead bounds what the file store adds to a message's subject,
// headers and payload when it counts bytes (its record header and hash).
const storeOverhead = 64

// ClassifyPublishError turns err, the answer to publishing msg on stream,
// into a *StreamFullError when the server refused it with code 10077 and
// the stream is at its max_msgs or cannot take msg within its max_bytes.
// Any other error (including a 10077 the stream's state does not explain,
// and a failure to read that state) comes back unchanged: the caller
// retries both the same way, only the diagnosis differs. msg may be nil
// (then only the stream's own counts decide).
func ClassifyPublishError(ctx context.Context, js jetstream.JetStream, stream string, msg *nats.Msg, err error) error {
	if !IsStoreRefusal(err) {
		return err
	}
	s, serr := js.Stream(ctx, stream)
	if serr != nil {
		return err
	}
	info, serr := s.Info(ctx)
	if serr != nil {
		return err
	}
	cfg, st := info.Config, info.State
	size := uint64(storeOverhead)
	if msg != nil {
		size += uint64(len(msg.Subject) + len(msg.Data) + headerSize(msg.Header))
	}
	full := (cfg.MaxMsgs > 0 && st.Msgs >= uint64(cfg.MaxMsgs)) ||
		(cfg.MaxBytes > 0 && st.Bytes+size > uint64(cfg.MaxBytes))
	if !full {
		return err
	}
	return &StreamFullError{Stream: stream, MaxBytes: cfg.MaxBytes, MaxMsgs: cfg.MaxMsgs, Bytes: st.Bytes, Msgs: st.Msgs, Err: err}
}

// headerSize is the wire size of h ("NATS/1.0\r\n", "k: v\r\n" each, "\r\n").
func headerSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
