package bus

// Large events: an envelope larger than the server's max_payload.
//
// # Object store, not chunked messages
//
// The full envelope goes to a JetStream object store bucket
// (StreamsConfig.LargeBucket) and the change stream receives one small
// pointer message in its place: the same subject and Nats-Msg-Id as the
// event would have had, the headers below, and as body the envelope
// without its documents (Doc, Pre and Update left out, Oversize = the full
// size), so a reader that cannot resolve the pointer still knows the
// event's id, collection, document key and position.
//
// Chunking the envelope into several change-stream messages was rejected:
// the sink, `cdc replay stream`, dead letters (StreamSeq), positions and
// trimming all rely on one stream message per event, and chunks would
// interleave with other asynchronous publishes, need reassembly state
// across batches, redeliveries and restarts, and make a gap or a
// half-purged event possible. The object store (the jetstream package's
// CreateOrUpdateObjectStore, ObjectStore.Put/Get) already chunks into its
// own stream, is replicated like the change stream, and checks a SHA-256
// digest of the whole object on read; one pointer per event leaves the
// change stream's sequence logic exactly as it is.
//
// # Names, idempotency, lifetime
//
// The object of an envelope is named "<event id>/<first 16 bytes of its
// SHA-256, hex>". Republishing the same event (a tailer restart from its
// checkpoint) finds the object already there with the same digest and
// reuses it; the pointer is then dropped by the stream's dedup window.
// The digest is part of the name because a re-read event can differ (the
// current document of an updateLookup): the pointer that JetStream kept,
// the first one, must keep naming the bytes it was published with, so a
// different envelope gets a different object and never overwrites it.
//
// Objects are never deleted by the replicator: the bucket's TTL (max_age
// of its stream) is twice the change stream's max_age, and an object is
// reused only while it is younger than the change stream's max_age (else
// put again, which restarts its age), so an object outlives every pointer
// that names it. The sink's trim (TrimApplied) purges applied pointer
// messages from a size-limited change stream; their objects stay until the
// TTL removes them. A change stream without max_age has a bucket without
// TTL: objects then stay until an operator purges the bucket.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/event"
)

// Headers of a pointer message.
const (
	// HeaderLargeBucket is the object store bucket holding the envelope.
	HeaderLargeBucket = "Cdc-Large-Bucket"
	// HeaderLargeObject is the object's name in that bucket.
	HeaderLargeObject = "Cdc-Large-Object"
	// HeaderLargeSize is the envelope's size in bytes (decimal).
	HeaderLargeSize = "Cdc-Large-Size"
	// HeaderLargeDigest is the envelope's digest, "SHA-256=<base64url>",
	// the form the object store reports (ObjectInfo.Digest).
	HeaderLargeDigest = "Cdc-Large-Digest"
)

// LargePutTimeout bounds one StoreLarge call where the caller has no
// context of its own.
const LargePutTimeout = 2 * time.Minute

// largeChunk is the object store chunk size: the library's default (128
// KiB), less when max_payload is smaller.
const largeChunk = 128 << 10

// LargeBucket is the object store bucket of the change stream's large
// events: the stream's name with "_large" (characters a bucket name cannot
// have become '_').
func (c StreamsConfig) LargeBucket() string {
	b := []byte(c.Stream + "_large")
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// largeTTL is the bucket's TTL for a change stream kept for maxAge: twice
// it (see the file comment), none when the stream has no age limit.
func largeTTL(maxAge time.Duration) time.Duration { return 2 * maxAge }

// ensureLarge declares the large-event bucket (create or update), with the
// change stream's replicas and file storage.
func ensureLarge(ctx context.Context, js jetstream.JetStream, c StreamsConfig) error {
	_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      c.LargeBucket(),
		Description: "CDC change events larger than max_payload; the change stream holds a pointer to each",
		TTL:         largeTTL(c.MaxAge),
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return fmt.Errorf("declare large-event bucket %s: %w", c.LargeBucket(), err)
	}
	return nil
}

// Sentinels of a *LargeObjectError (errors.Is).
var (
	// ErrLargeMissing: the object a pointer names is not in its bucket
	// (expired, deleted, or the bucket is gone). Poison: dead-letter the
	// event; retrying never brings the object back.
	ErrLargeMissing = errors.New("large event object missing")
	// ErrLargeCorrupt: the object, or the pointer itself, does not match
	// (size or SHA-256). Poison.
	ErrLargeCorrupt = errors.New("large event object does not match its pointer")
	// ErrLargeUnavailable: the object store could not be reached or did
	// not answer. Retryable.
	ErrLargeUnavailable = errors.New("large event object store unavailable")
)

// LargeObjectError is a failure to store or read a large event's object.
// Kind is one of ErrLargeMissing, ErrLargeCorrupt, ErrLargeUnavailable;
// errors.Is matches it, and the library's error (Err) stays reachable.
type LargeObjectError struct {
	Kind    error
	EventID string
	Bucket  string
	Object  string
	Size    int64
	// Detail says what did not match (ErrLargeCorrupt).
	Detail string
	Err    error
}

func (e *LargeObjectError) Error() string {
	where := fmt.Sprintf("event %s: object %q in bucket %s (%d bytes)", e.EventID, e.Object, e.Bucket, e.Size)
	var msg string
	switch e.Kind {
	case ErrLargeMissing:
		msg = fmt.Sprintf("%s: %v: it expired (the bucket keeps objects twice the change stream's max_age) or was deleted; "+
			"the change cannot be applied from the stream: re-read the document from MongoDB with cdc replay ids", where, e.Kind)
	case ErrLargeCorrupt:
		msg = fmt.Sprintf("%s: %v: %s; re-read the document from MongoDB with cdc replay ids", where, e.Kind, e.Detail)
	default:
		msg = fmt.Sprintf("%s: %v", where, e.Kind)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns Kind and the underlying error.
func (e *LargeObjectError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// IsLargePoison reports whether err is a large event that can never be
// read (missing or corrupt object): dead-letter it. Any other error from
// EventBytes is retryable.
func IsLargePoison(err error) bool {
	return errors.Is(err, ErrLargeMissing) || errors.Is(err, ErrLargeCorrupt)
}

// digestOf is data's digest in the object store's form, and the raw sum.
func digestOf(data []byte) (string, [sha256.Size]byte) {
	sum := sha256.Sum256(data)
	return "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:]), sum
}

// LargeObjectName is the object name of an envelope of event id with
// SHA-256 sum.
func LargeObjectName(id string, sum [sha256.Size]byte) string {
	return id + "/" + hex.EncodeToString(sum[:16])
}

// EncodeEventMsg is EventMsg followed, for an envelope over the
// connection's max_payload, by StoreLarge: the message it returns can be
// published as is. Errors from StoreLarge are *LargeObjectError
// (ErrLargeUnavailable: retry).
func EncodeEventMsg(ctx context.Context, js jetstream.JetStream, c StreamsConfig, ev *event.Event) (*nats.Msg, error) {
	msg, oversize, err := EventMsg(c, ev, js.Conn().MaxPayload())
	if err != nil || !oversize {
		return msg, err
	}
	return StoreLarge(ctx, js, c, ev, msg)
}

// StoreLarge puts the full envelope of ev, the body of msg (EventMsg's
// oversize message), into the large-event bucket, or reuses the object
// already there with the same digest, and returns the pointer message to
// publish in its place (same subject, Nats-Msg-Id and Content-Type). The
// object is stored (acknowledged by JetStream) when StoreLarge returns, so
// publishing the pointer afterwards, even asynchronously, never names an
// object that is not there. Every error is a *LargeObjectError of kind
// ErrLargeUnavailable: retry (the tailer from its checkpoint).
func StoreLarge(ctx context.Context, js jetstream.JetStream, c StreamsConfig, ev *event.Event, msg *nats.Msg) (*nats.Msg, error) {
	data := msg.Data
	digest, sum := digestOf(data)
	bucket, name := c.LargeBucket(), LargeObjectName(ev.ID, sum)
	fail := func(err error) error {
		return &LargeObjectError{Kind: ErrLargeUnavailable, EventID: ev.ID, Bucket: bucket, Object: name, Size: int64(len(data)), Err: err}
	}
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, fail(fmt.Errorf("open bucket: %w", err))
	}
	info, err := obs.GetInfo(ctx, name)
	switch {
	case err == nil && !info.Deleted && info.Digest == digest && info.Size == uint64(len(data)) &&
		(c.MaxAge <= 0 || time.Since(info.ModTime) <= c.MaxAge):
		// Same bytes, young enough to outlive a pointer published now.
	case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound):
		return nil, fail(fmt.Errorf("object info: %w", err))
	default:
		chunk := largeChunk
		if mp := js.Conn().MaxPayload(); mp > 0 && mp-headerRoom < int64(chunk) {
			chunk = int(mp - headerRoom)
		}
		put, err := obs.Put(ctx, jetstream.ObjectMeta{
			Name:        name,
			Description: "CDC event " + ev.ID,
			Opts:        &jetstream.ObjectMetaOptions{ChunkSize: uint32(chunk)},
		}, bytes.NewReader(data))
		if err != nil {
			return nil, fail(fmt.Errorf("put: %w", err))
		}
		if put.Digest != digest || put.Size != uint64(len(data)) {
			return nil, fail(fmt.Errorf("the store recorded %d bytes with digest %s, want %d bytes with %s", put.Size, put.Digest, len(data), digest))
		}
	}
	slim := *ev
	slim.Oversize = int64(len(data))
	slim.Doc, slim.Pre, slim.Update = nil, nil, nil
	body, err := slim.Marshal()
	if err != nil {
		return nil, err
	}
	h := make(nats.Header, len(msg.Header)+4)
	for k, v := range msg.Header {
		h[k] = v
	}
	h[HeaderLargeBucket] = []string{bucket}
	h[HeaderLargeObject] = []string{name}
	h[HeaderLargeSize] = []string{strconv.Itoa(len(data))}
	h[HeaderLargeDigest] = []string{digest}
	return &nats.Msg{Subject: msg.Subject, Data: body, Header: h}, nil
}

// DecodeEventMsg decodes a change-stream message into its event, reading
// a large event's envelope from the object store (EventBytes). Errors:
// a *LargeObjectError (IsLargePoison: dead-letter; otherwise retry), or
// event.ErrMalformed from the envelope.
func DecodeEventMsg(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg) (*event.Event, error) {
	data, err := EventBytes(ctx, js, msg.Headers(), msg.Data())
	if err != nil {
		return nil, err
	}
	return event.Unmarshal(data)
}

// EventBytes is the one way a change-stream message becomes envelope
// bytes (the sink, cdc replay stream): body itself, or for a pointer
// message (HeaderLargeObject set) the object it names, read whole and
// checked against the pointer's size and SHA-256 digest (the library also
// checks the object against its own recorded digest). Errors are
// *LargeObjectError: ErrLargeMissing (no such object or bucket) and
// ErrLargeCorrupt (a mismatch, or pointer headers that cannot be parsed)
// are poison; ErrLargeUnavailable (anything else: store unreachable,
// timeouts) is retryable.
func EventBytes(ctx context.Context, js jetstream.JetStream, h nats.Header, body []byte) ([]byte, error) {
	name := h.Get(HeaderLargeObject)
	if name == "" {
		return body, nil
	}
	e := &LargeObjectError{EventID: h.Get(jetstream.MsgIDHeader), Bucket: h.Get(HeaderLargeBucket), Object: name}
	size, serr := strconv.ParseInt(h.Get(HeaderLargeSize), 10, 64)
	want := h.Get(HeaderLargeDigest)
	if serr != nil || size < 0 || e.Bucket == "" || want == "" {
		e.Kind, e.Detail = ErrLargeCorrupt, fmt.Sprintf("the pointer's headers are incomplete (%s %q, %s %q, %s %q)",
			HeaderLargeBucket, e.Bucket, HeaderLargeSize, h.Get(HeaderLargeSize), HeaderLargeDigest, want)
		return nil, e
	}
	e.Size = size
	obs, err := js.ObjectStore(ctx, e.Bucket)
	if err != nil {
		e.Kind, e.Err = ErrLargeUnavailable, err
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			e.Kind = ErrLargeMissing
		}
		return nil, e
	}
	data, err := obs.GetBytes(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		e.Kind, e.Err = ErrLargeMissing, err
		return nil, e
	case errors.Is(err, jetstream.ErrDigestMismatch):
		e.Kind, e.Detail, e.Err = ErrLargeCorrupt, "its chunks do not match the digest the store recorded", err
		return nil, e
	case err != nil:
		e.Kind, e.Err = ErrLargeUnavailable, err
		return nil, e
	}
	if int64(len(data)) != size {
		e.Kind, e.Detail = ErrLargeCorrupt, fmt.Sprintf("the object has %d bytes, the pointer says %d", len(data), size)
		return nil, e
	}
	if got, _ := digestOf(data); got != want {
		e.Kind, e.Detail = ErrLargeCorrupt, fmt.Sprintf("the object's digest is %s, the pointer says %s", got, want)
		return nil, e
	}
	return data, nil
}
