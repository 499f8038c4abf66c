package bus

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
)

// Lane is one ordered, independently applied part of the change stream: a
// group of collections that share transactions or foreign keys. With lanes
// configured (StreamsConfig.Lanes), each lane has a stream of its own,
// LaneStream(lane), capturing <SubjectPrefix>.<lane>.>, so the sequences a
// lane's sink is delivered stay contiguous (the sink's gap check keeps
// working per lane) and each lane has its own consumer, position row and
// fence in Postgres. Without lanes (the default) there is one stream,
// StreamsConfig.Stream on <SubjectPrefix>.>, exactly as before lanes
// existed: existing deployments need no migration.
//
// A lane may be one part of a group split by a hash of the document id
// (Parts > 1, sink.lanes "name/N:..."): the group's collections are in all
// its parts, and an event outside a transaction goes to part
// PartOf(_id, Parts), so one document's changes always share a lane.
type Lane struct {
	Name        string
	Collections []string
	// Group names the split group ("" or Name when unsplit); Part is
	// this lane's index in it, Parts the group's size (0 or 1: unsplit).
	Group       string
	Part, Parts int
}

// laneGroup is where a collection's events go: one lane, or Parts lanes
// chosen by the document id's hash (names indexed by part).
type laneGroup struct {
	names []string
}

// PartOf is the part of a split lane group that the document whose key is
// key (event.DocKey: the _id as MongoDB identifies it, typed, so
// ObjectId(X) and the string "X" differ while int32 7 and NumberLong(7),
// one document to MongoDB, are one key) belongs to: xxHash64
// (github.com/cespare/xxhash/v2, already in the build through the
// Prometheus client; FNV-1a's low bits spread ObjectIds that differ only
// in their timestamp badly) of the key, modulo parts. It depends only on
// the document, so every publisher (tailer, replay, snapshot) and every
// version of this program routes a document to the same part. Changing
// it, or a group's size, re-routes documents: the layout check
// (checkLayoutAtDeclare) requires the old lanes drained first.
func PartOf(key string, parts int) int {
	if parts <= 1 {
		return 0
	}
	return int(xxhash.Sum64String(key) % uint64(parts))
}

// laneName is what a lane name may be: one subject token, and a valid
// part of a stream and a consumer name.
var laneName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// ValidLaneName reports whether name can name a lane (lower-case letters,
// digits, '_' and '-', at most 32, starting with a letter or digit).
func ValidLaneName(name string) bool { return laneName.MatchString(name) }

// WithLanes returns c with lanes set (nil or empty: one lane, the default
// stream). Lanes must be valid (config validates them): every collection
// in exactly one lane.
func (c StreamsConfig) WithLanes(lanes []Lane) StreamsConfig {
	c.Lanes = lanes
	c.laneOf = nil
	if len(lanes) > 0 {
		c.laneOf = map[string]*laneGroup{}
		for _, l := range lanes {
			for _, coll := range l.Collections {
				g := c.laneOf[coll]
				if g == nil {
					g = &laneGroup{}
					c.laneOf[coll] = g
				}
				if l.Parts > 1 {
					for len(g.names) < l.Parts {
						g.names = append(g.names, "")
					}
					g.names[l.Part] = l.Name
				} else {
					g.names = []string{l.Name}
				}
			}
		}
	}
	return c
}

// Laned reports whether lanes are configured.
func (c StreamsConfig) Laned() bool { return len(c.Lanes) > 0 }

// LaneNames lists the lanes' names, or one "" (the default lane) when no
// lanes are configured.
func (c StreamsConfig) LaneNames() []string {
	if !c.Laned() {
		return []string{""}
	}
	out := make([]string, len(c.Lanes))
	for i, l := range c.Lanes {
		out[i] = l.Name
	}
	return out
}

// LaneOf is the lane of ev outside a transaction ("" without lanes): its
// collection's lane, or in a split group the part its document id hashes
// to (PartOf). A collection in no lane is an error: config validation
// makes every replicated collection belong to exactly one group.
func (c StreamsConfig) LaneOf(ev *event.Event) (string, error) {
	if !c.Laned() {
		return "", nil
	}
	g, ok := c.laneOf[ev.Source.Coll]
	if !ok {
		return "", fmt.Errorf("collection %q is in no sink lane (sink.lanes)", ev.Source.Coll)
	}
	if len(g.names) == 1 {
		return g.names[0], nil
	}
	key, err := ev.DocKey()
	if err != nil {
		return "", fmt.Errorf("choose the lane of event %s: %w", ev.ID, err)
	}
	return g.names[PartOf(key, len(g.names))], nil
}

// LanesOf lists the lanes that carry collection coll's events: one, or
// every part of its split group; nil when coll is in no lane. Without
// lanes: the default lane "".
func (c StreamsConfig) LanesOf(coll string) []string {
	if !c.Laned() {
		return []string{""}
	}
	if g, ok := c.laneOf[coll]; ok {
		return g.names
	}
	return nil
}

// LaneStream is the stream of lane ("": the default stream).
func (c StreamsConfig) LaneStream(lane string) string {
	if lane == "" {
		return c.Stream
	}
	return c.Stream + "_" + lane
}

// LaneSubject is the subject of a change event of db.coll in lane ("":
// Subject, the default lane's).
func (c StreamsConfig) LaneSubject(lane, db, coll string) string {
	if lane == "" {
		return c.Subject(db, coll)
	}
	return c.SubjectPrefix + "." + lane + "." + escapeToken(db) + "." + escapeToken(coll)
}

// ForLane is c as lane's sink sees it: Stream is the lane's stream.
func (c StreamsConfig) ForLane(lane string) StreamsConfig {
	c.Stream = c.LaneStream(lane)
	return c
}

// LaneRouter maps (collection, transaction) to a lane for a publisher that
// sends events in change-stream order (the tailer, replay, snapshot). An
// event outside a transaction goes to its collection's lane. Every event
// of a Mongo transaction goes to the lane of the transaction's first event
// (Txn.Index 0, which a change stream delivers first: a transaction's
// events are consecutive), so the sink that assembles the transaction sees
// all of it and applies it whole in one Postgres transaction; why that
// keeps per-document order is in pkg/sink's doc. A router is not safe for
// concurrent use; the zero value routes everything to the default lane.
type LaneRouter struct {
	c       StreamsConfig
	txn     string
	txnLane string
}

// NewLaneRouter returns a router for c's lanes.
func NewLaneRouter(c StreamsConfig) *LaneRouter { return &LaneRouter{c: c} }

// Route returns ev's lane. An event of a transaction whose first event
// this router did not see (a replay starting inside one) goes to its
// collection's lane: the sink then finds the transaction incomplete and
// dead-letters it whole after sink.txn_timeout, never applies half of it.
func (r *LaneRouter) Route(ev *event.Event) (string, error) {
	if r == nil || !r.c.Laned() {
		return "", nil
	}
	if t := ev.Source.Txn; t != nil {
		id := t.ID()
		if t.Index > 0 && id == r.txn {
			return r.txnLane, nil
		}
		l, err := r.c.LaneOf(ev)
		if err != nil {
			return "", err
		}
		r.txn, r.txnLane = id, l
		return l, nil
	}
	return r.c.LaneOf(ev)
}

// ensureChangeStreams declares the change stream: the default one on
// <SubjectPrefix>.> without lanes, else one per lane on
// <SubjectPrefix>.<lane>.> (the default stream is then not declared: its
// subjects would overlap the lanes', which JetStream refuses; a deployment
// that moves to lanes drains and deletes it first).
func ensureChangeStreams(ctx context.Context, js jetstream.JetStream, c StreamsConfig) error {
	if !c.Laned() {
		return ensureChangeStream(ctx, js, c, c.Stream, c.SubjectPrefix+".>", nil)
	}
	// The layout may change only once the old one's events are applied
	// (layout.go).
	retired, err := checkLayoutAtDeclare(ctx, js, c)
	if err != nil {
		return err
	}
	layout := c.Layout()
	for _, l := range c.Lanes {
		md := map[string]string{MetaLaneLayout: layout, MetaLane: l.Name}
		if err := ensureChangeStream(ctx, js, c, c.LaneStream(l.Name), c.SubjectPrefix+"."+l.Name+".>", md); err != nil {
			return err
		}
	}
	for _, s := range retired {
		if err := restamp(ctx, js, s, layout); err != nil {
			return err
		}
	}
	return nil
}

func ensureChangeStream(ctx context.Context, js jetstream.JetStream, c StreamsConfig, name, subject string, metadata map[string]string) error {
	maxBytes := c.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "CDC change events (MongoDB change stream -> Postgres sink)",
		Subjects:    []string{subject},
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
		Metadata:   metadata,
	})
	if err != nil {
		return fmt.Errorf("declare stream %s: %w", name, err)
	}
	return nil
}

// StreamOf is the change stream that captures subject, a change event's
// subject built by LaneSubject: the lane's stream, or Stream without
// lanes.
func (c StreamsConfig) StreamOf(subject string) string {
	if !c.Laned() {
		return c.Stream
	}
	rest, ok := strings.CutPrefix(subject, c.SubjectPrefix+".")
	if !ok {
		return c.Stream
	}
	lane, _, _ := strings.Cut(rest, ".")
	return c.LaneStream(lane)
}

// LanesFromConfig is sink.lanes (config.ParseLanes) as Lanes.
func LanesFromConfig(lanes []config.LaneConfig) []Lane {
	if len(lanes) == 0 {
		return nil
	}
	out := make([]Lane, len(lanes))
	for i, l := range lanes {
		out[i] = Lane{Name: l.Name, Collections: l.Collections, Group: l.Group, Part: l.Part, Parts: l.Parts}
	}
	return out
}
