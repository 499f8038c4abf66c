package status

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/oplog"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

// Target names what to read: the stored positions of one replicator.
type Target struct {
	// Database is the source database (the checkpoint key is
	// tailer.<Database>).
	Database         string
	Stream           string
	DLQStream        string
	CheckpointBucket string
	// Consumer is the sink's durable consumer and cdc.sink_positions key.
	Consumer string
	// Lanes are sink.lanes (nil: none; the report has no lanes section).
	Lanes []config.LaneConfig
	// Mappings are the replicated collections' transforms (for the
	// counts); MappingsErr says why they could not be loaded.
	Mappings    []*transform.Mapping
	MappingsErr error
	// HeadroomWarning makes a lower oplog headroom a problem (0: only a
	// lost checkpoint is).
	HeadroomWarning time.Duration
	// StandbyTakeover is tailer.standby_takeover: a checkpoint unwritten
	// for longer is LeaseUnrenewed (0: never).
	StandbyTakeover time.Duration
}

// TargetFromConfig derives the Target of cfg, loading its transforms.
func TargetFromConfig(cfg *config.Config) Target {
	t := Target{
		Database:         cfg.Mongo.Database,
		Stream:           cfg.NATS.Stream,
		DLQStream:        cfg.NATS.DLQStream,
		CheckpointBucket: cfg.NATS.CheckpointBucket,
		Consumer:         cfg.Sink.Consumer,
		HeadroomWarning:  cfg.Oplog.HeadroomWarning,
		StandbyTakeover:  cfg.Tailer.StandbyTakeover,
	}
	// Validate refused a malformed sink.lanes; a report of a config that
	// skipped it shows no lanes rather than failing.
	t.Lanes, _ = config.ParseLanes(cfg.Sink.Lanes)
	set, err := transforms.Load(cfg)
	if err != nil {
		t.MappingsErr = err
		return t
	}
	colls, err := transforms.Collections(cfg, set)
	if err != nil {
		t.MappingsErr = err
		return t
	}
	for _, c := range colls {
		m, _ := set.Get(c)
		t.Mappings = append(t.Mappings, m)
	}
	return t
}

// Run opens the systems of cfg, collects the report and closes them.
func Run(ctx context.Context, cfg *config.Config, opts Options) *Report {
	src := Open(ctx, cfg, opts)
	defer src.Close(context.WithoutCancel(ctx))
	return Collect(ctx, src, TargetFromConfig(cfg), opts)
}

// Collect reads every section of the report from src. Each read is
// bounded by opts.Timeout; a failed read fills that section's Error and
// the others are still read.
func Collect(ctx context.Context, src *Sources, tgt Target, opts Options) *Report {
	r := &Report{V: ReportVersion, Time: opts.now().UTC(), NATS: src.NATS, Postgres: src.Postgres, Mongo: src.Mongo}
	c := collector{src: src, tgt: tgt, opts: opts, r: r}
	c.tailer(ctx)
	c.oplog(ctx)
	c.streams(ctx)
	c.sink(ctx)
	c.lanes(ctx) // lanes.go
	c.deferred(ctx)
	c.lag()
	c.deadLetters(ctx)
	c.verify(ctx) // verify.go
	c.collections(ctx)
	c.judge()
	return r
}

type collector struct {
	src  *Sources
	tgt  Target
	opts Options
	r    *Report
	// checkpoint is the tailer's checkpoint time (ok: there is one).
	checkpoint   event.ClusterTime
	checkpointOK bool
}

func (c *collector) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opts.timeout())
}

func (c *collector) tailer(ctx context.Context) {
	t := &c.r.Tailer
	t.Bucket, t.Key = c.tgt.CheckpointBucket, checkpoint.Key(c.tgt.Database)
	switch {
	case c.src.js == nil:
		t.Error = natsUnreachable
		return
	case c.tgt.Database == "":
		t.Error = "mongo.database is not set"
		return
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	store, err := checkpoint.NewKVStore(ctx, c.src.js, t.Bucket, t.Key)
	if err != nil {
		t.Error = oneLine(err)
		return
	}
	cp, _, err := store.Load(ctx)
	if err != nil {
		t.Error = oneLine(err)
		return
	}
	if cp == nil {
		return
	}
	t.Found = true
	t.ResumeToken = cp.Token
	t.Events = cp.Events
	if cp.ClusterTime.T > 0 {
		t.LastEventClusterTime = clusterTime(cp.ClusterTime)
	}
	c.checkpoint = cp.EffectiveTime()
	c.checkpointOK = c.checkpoint.T > 0
	if c.checkpointOK {
		t.ClusterTime = clusterTime(c.checkpoint)
	}
	if !cp.UpdatedAt.IsZero() {
		at := cp.UpdatedAt.UTC()
		t.SavedAt = &at
		t.AgeSeconds = max(c.opts.now().Sub(at).Seconds(), 0)
	}
	t.Lease = leaseStatus(cp, c.opts.now(), c.tgt.StandbyTakeover)
}

func (c *collector) oplog(ctx context.Context) {
	o := &c.r.Oplog
	if c.src.mongo == nil {
		o.Error = mongoUnreachable
		return
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	oldest, newest, err := oplog.Window(ctx, c.src.mongo)
	if err != nil {
		o.Error = oneLine(err)
		return
	}
	o.Oldest, o.Newest = clusterTime(oldest), clusterTime(newest)
	o.WindowSeconds = float64(newest.T) - float64(oldest.T)
	if !c.checkpointOK {
		// The window alone is still worth showing.
		return
	}
	e, err := oplog.Measure(ctx, c.src.mongo, c.checkpoint, oldest, newest)
	if err != nil {
		o.Error = oneLine(err)
		return
	}
	headroom, behind := e.Headroom.Seconds(), e.Lag.Seconds()
	o.HeadroomSeconds, o.BehindSeconds = &headroom, &behind
	o.Lost = e.Lost
	o.Low = e.Low(c.tgt.HeadroomWarning)
}

func (c *collector) streams(ctx context.Context) {
	s, d, cons := &c.r.Stream, &c.r.DLQStream, &c.r.Consumer
	s.Name, d.Name, cons.Name = c.tgt.Stream, c.tgt.DLQStream, c.tgt.Consumer
	if c.src.js == nil {
		s.Error, d.Error, cons.Error = natsUnreachable, natsUnreachable, natsUnreachable
		return
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if c.laned() {
		// The default stream is not declared with lanes (pkg/bus
		// ensureChangeStreams): each lane has its stream and consumer.
		s.Error, cons.Error = perLane, perLane
		c.streamInfo(ctx, d)
		return
	}
	stream := c.streamInfo(ctx, s)
	c.streamInfo(ctx, d)
	if stream == nil {
		cons.Error = streamUnknown
		return
	}
	consumer, err := stream.Consumer(ctx, cons.Name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return
	}
	if err != nil {
		cons.Error = fmt.Sprintf("consumer %s: %s", cons.Name, oneLine(err))
		return
	}
	ci := consumer.CachedInfo()
	cons.Found = true
	cons.Pending = ci.NumPending
	cons.AckPending = ci.NumAckPending
	cons.Redelivered = ci.NumRedelivered
	cons.Waiting = ci.NumWaiting
	cons.DeliveredSeq = ci.Delivered.Stream
	cons.AckFloorSeq = ci.AckFloor.Stream
}

// streamInfo fills st; it returns the stream when it exists.
func (c *collector) streamInfo(ctx context.Context, st *StreamStatus) jetstream.Stream {
	stream, err := c.src.js.Stream(ctx, st.Name)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st.Error = "stream not found (the daemon declares it at start-up)"
		} else {
			st.Error = oneLine(err)
		}
		return nil
	}
	info := stream.CachedInfo()
	cur := info.State
	st.Messages, st.Bytes = cur.Msgs, cur.Bytes
	st.FirstSeq, st.LastSeq = cur.FirstSeq, cur.LastSeq
	st.Consumers = cur.Consumers
	if !info.Created.IsZero() {
		created := streamIdentity(info.Created)
		st.Created = &created
	}
	if cur.Msgs > 0 {
		ft, lt := cur.FirstTime.UTC(), cur.LastTime.UTC()
		st.FirstTime, st.LastTime = &ft, &lt
	}
	return stream
}

func (c *collector) sink(ctx context.Context) {
	if c.laned() {
		c.r.Sink = SinkStatus{Consumer: c.tgt.Consumer, Error: perLane}
		return
	}
	c.r.Sink = c.position(ctx, c.tgt.Consumer)
}

// position reads the position row and fence of consumer (the sink's, or
// a lane's).
func (c *collector) position(ctx context.Context, consumer string) SinkStatus {
	s := SinkStatus{Consumer: consumer}
	if c.src.pg == nil {
		s.Error = pgUnreachable
		return s
	}
	qctx, cancel := c.ctx(ctx)
	p, ok, err := state.ReadPosition(qctx, c.src.pg, s.Consumer)
	cancel()
	if err != nil {
		s.Error = oneLine(err)
		return s
	}
	if !ok {
		return s
	}
	s.Found = true
	s.StreamSeq = p.Seq
	if p.ClusterTime != (event.ClusterTime{}) {
		s.ClusterTime = clusterTime(p.ClusterTime)
	}
	at := p.AppliedAt.UTC()
	s.AppliedAt = &at
	s.Stream = p.Stream
	if !p.StreamCreated.IsZero() {
		created := p.StreamCreated.UTC()
		s.StreamCreated = &created
	}
	f := &FenceStatus{Owner: p.Owner, Epoch: p.Epoch}
	if !p.FencedAt.IsZero() {
		since := p.FencedAt.UTC()
		f.Since = &since
	}
	qctx, cancel = c.ctx(ctx)
	held, err := state.FenceHeld(qctx, c.src.pg, s.Consumer)
	cancel()
	if err != nil {
		f.Error = oneLine(err)
	} else {
		f.Held = &held
	}
	s.Fence = f
	return s
}

// streamIdentity is a stream's creation time as the sink position records
// it (timestamptz keeps microseconds).
func streamIdentity(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

func (c *collector) deferred(ctx context.Context) {
	d := &c.r.Deferred
	if c.src.pg == nil {
		d.Error = pgUnreachable
		return
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	// With lanes, the sum over the lanes' consumers (the oldest of all).
	for _, consumer := range c.consumers() {
		st, err := state.ReadDeferredStats(ctx, c.src.pg, consumer)
		if err != nil {
			*d = DeferredStatus{Error: oneLine(err)}
			return
		}
		d.Waiting, d.TxnParts, d.Bytes = d.Waiting+st.Waiting, d.TxnParts+st.TxnParts, d.Bytes+st.Bytes
		if !st.Oldest.IsZero() && (d.Oldest == nil || st.Oldest.Before(*d.Oldest)) {
			oldest := st.Oldest.UTC()
			d.Oldest = &oldest
			d.OldestAgeSeconds = max(c.opts.now().Sub(oldest).Seconds(), 0)
		}
	}
}

func (c *collector) lag() {
	if c.laned() {
		c.r.Lag = c.lanesLag()
		return
	}
	c.r.Lag = lagOf(c.r.Stream, c.r.Sink, c.opts.now())
}

// lagOf is the lag of the position sk on the stream st at now.
func lagOf(st StreamStatus, sk SinkStatus, now time.Time) LagStatus {
	var l LagStatus
	switch {
	case st.Error != "":
		l.Error = streamUnknown
		return l
	case sk.Error != "":
		l.Error = positionUnknown
		return l
	}
	// Before the sink's first commit the floor is 0: every event in the
	// stream is pending.
	if st.LastSeq > sk.StreamSeq {
		l.Events = st.LastSeq - sk.StreamSeq
	}
	if l.Events > 0 && sk.ClusterTime != nil {
		l.Seconds = max(now.Sub(sk.ClusterTime.Time).Seconds(), 0)
	}
	return l
}

func (c *collector) deadLetters(ctx context.Context) {
	d := &c.r.DeadLetters
	d.Count = []DeadLetterCount{}
	if c.src.pg == nil {
		d.Error = pgUnreachable
		return
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	open, err := state.OpenDeadLetterCounts(ctx, c.src.pg)
	if err != nil {
		d.Error = oneLine(err)
		return
	}
	counts := make([]DeadLetterCount, 0, len(open))
	for _, o := range open {
		counts = append(counts, DeadLetterCount{Collection: o.Collection, Class: string(o.Class), Count: o.Count})
	}
	for _, dc := range counts {
		d.Open += dc.Count
	}
	d.Count = counts
}

func (c *collector) collections(ctx context.Context) {
	cs := &c.r.Collections
	cs.Items = []CollectionCount{}
	if !c.opts.Counts {
		cs.Skipped = true
		return
	}
	if c.tgt.MappingsErr != nil {
		cs.Error = fmt.Sprintf("transforms: %v", c.tgt.MappingsErr)
		return
	}
	for _, m := range c.tgt.Mappings {
		cs.Items = append(cs.Items, CollectionCount{Collection: m.Collection, Table: m.Table})
	}
	if c.src.pg == nil {
		cs.PostgresError = pgUnreachable
	} else {
		c.pgCounts(ctx)
	}
	if c.src.mongo == nil {
		cs.MongoError = mongoUnreachable
	} else if c.tgt.Database == "" {
		cs.MongoError = "mongo.database is not set"
	} else {
		for i := range cs.Items {
			it := &cs.Items[i]
			qctx, cancel := c.ctx(ctx)
			n, err := c.src.mongo.Database(c.tgt.Database).Collection(it.Collection).CountDocuments(qctx, bson.D{})
			cancel()
			if err != nil {
				it.Error = joinErr(it.Error, "mongo countDocuments: "+oneLine(err))
				continue
			}
			it.Mongo = &n
		}
	}
}

func (c *collector) pgCounts(ctx context.Context) {
	cs := &c.r.Collections
	qctx, cancel := c.ctx(ctx)
	versions, err := state.DocVersionCounts(qctx, c.src.pg)
	cancel()
	if err != nil {
		cs.PostgresError = oneLine(err)
	}
	for i, m := range c.tgt.Mappings {
		it := &cs.Items[i]
		if err == nil {
			v := versions[m.Collection]
			it.DocVersions, it.Tombstones = &v.Live, &v.Tombstones
		}
		table := pgx.Identifier(splitTable(m.Table)).Sanitize()
		q := `SELECT count(*) FROM ` + table
		var rows, live int64
		dest := []any{&rows}
		if m.SoftDeleteColumn != "" {
			q = fmt.Sprintf(`SELECT count(*), count(*) FILTER (WHERE %s IS NULL) FROM %s`,
				pgx.Identifier{m.SoftDeleteColumn}.Sanitize(), table)
			dest = append(dest, &live)
		}
		qctx, cancel := c.ctx(ctx)
		qerr := c.src.pg.QueryRow(qctx, q).Scan(dest...)
		cancel()
		if qerr != nil {
			it.Error = joinErr(it.Error, fmt.Sprintf("count %s: %s", m.Table, oneLine(qerr)))
			continue
		}
		it.Rows = &rows
		if m.SoftDeleteColumn != "" {
			it.LiveRows = &live
		}
	}
}

// splitTable splits "schema.table" (the mappings' notation) into its
// identifier parts.
func splitTable(t string) []string {
	for i := 0; i < len(t); i++ {
		if t[i] == '.' {
			return []string{t[:i], t[i+1:]}
		}
	}
	return []string{t}
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
