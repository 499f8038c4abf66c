package status

import (
	"fmt"
	"time"
)

// The judgement of a collected report (judge: its problems, warnings and
// health), apart from collect.go, which reads the sections it judges.

// DeferredWarnAge is the age of the oldest deferred event past which the
// report warns (the CDCDeferredEventsStuck alert's threshold).
const DeferredWarnAge = 30 * time.Minute

// microTime formats a stream identity (microseconds, as Postgres keeps it).
const microTime = "2006-01-02T15:04:05.000000Z07:00"

// streamRecreated: the position records the identity of a stream and the
// stream of that name now has another one. Unknown either way (nothing
// recorded yet, the stream's creation time not reported) is not judged.
func streamRecreated(sk SinkStatus, st StreamStatus) bool {
	if !sk.Found || sk.StreamCreated == nil || st.Created == nil {
		return false
	}
	return !streamIdentity(*sk.StreamCreated).Equal(streamIdentity(*st.Created))
}

// The Error of a section that only restates another failure: a system
// unreachable (reported once, as its own problem), a section it needs
// unread, sections kept per lane (perLane). The collector writes these
// values itself and judge recognises them as those values, one definition
// for both; no error's message is matched.
const (
	natsUnreachable  = "NATS unreachable"
	pgUnreachable    = "PostgreSQL unreachable"
	mongoUnreachable = "MongoDB unreachable"
	streamUnknown    = "stream state unknown"
	positionUnknown  = "sink position unknown"
)

// restatements are the section Errors judge does not list again.
var restatements = map[string]bool{natsUnreachable: true, pgUnreachable: true, mongoUnreachable: true,
	streamUnknown: true, positionUnknown: true, perLane: true}

// judge lists the problems and the warnings: unreachable systems first, then states that
// need an operator, then sections that could not be read for another
// reason.
func (c *collector) judge() {
	r := c.r
	add := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }
	warn := func(format string, args ...any) { r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...)) }
	if r.NATS.Error != "" {
		add("nats: %s", r.NATS.Error)
	}
	if r.Postgres.Error != "" {
		add("postgres: %s", r.Postgres.Error)
	}
	if r.Mongo.Error != "" {
		add("mongo: %s", r.Mongo.Error)
	}
	if r.NATS.Mode == ModeStoredState {
		add("daemon: not running (its embedded NATS does not answer); this report is the state stored in %s", r.NATS.StoreDir)
	}
	// Section errors not explained by an unreachable system.
	section := func(name, err string) {
		if err != "" && !restatements[err] {
			add("%s: %s", name, err)
		}
	}
	c.judgeTailer(add, warn, section)
	c.judgeSink(add, section)
	c.judgeLanes(add, warn, section) // lanes.go
	c.judgeBacklog(add, warn, section)
	c.judgeVerify(warn, section) // verify.go
	cs := r.Collections
	section("collections", cs.Error)
	section("collections (postgres)", cs.PostgresError)
	section("collections (mongo)", cs.MongoError)
	for _, it := range cs.Items {
		section("collection "+it.Collection, it.Error)
	}
	if r.Problems == nil {
		r.Problems = []string{}
	}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	r.Healthy = len(r.Problems) == 0
}

// judgeTailer judges the tailer's checkpoint, its lease and the oplog
// together, since whether the oplog still holds the checkpoint is what
// decides if the tailer can resume.
func (c *collector) judgeTailer(add, warn func(string, ...any), section func(name, err string)) {
	r := c.r
	t := r.Tailer
	section("tailer checkpoint", t.Error)
	if t.Error == "" && !t.Found && r.NATS.Reachable {
		add("tailer checkpoint: none in %s/%s (the tailer has not saved one yet)", t.Bucket, t.Key)
	}
	if l := t.Lease; l != nil && l.State == LeaseUnrenewed {
		warn("tailer lease: %s has not written the checkpoint for %s, over tailer.standby_takeover %s: it is gone or stalled and no standby has taken over (is one running?)",
			l.Holder, secs(t.AgeSeconds), c.tgt.StandbyTakeover)
	}
	o := r.Oplog
	section("oplog", o.Error)
	switch {
	case o.Lost:
		add("oplog: the tailer checkpoint %s is older than the oldest oplog entry %s: resuming fails with ChangeStreamHistoryLost (286); re-snapshot (cdc snapshot) or replay the gap",
			t.ClusterTime, o.Oldest)
	case o.Low:
		add("oplog: headroom %s is below oplog.headroom_warning %s", secs(*o.HeadroomSeconds), c.tgt.HeadroomWarning)
	}
}

// judgeSink judges the stream, its consumer and the sink's position on
// it together: a position means something only against the stream it
// was recorded on.
func (c *collector) judgeSink(add func(string, ...any), section func(name, err string)) {
	r := c.r
	section("stream", r.Stream.Error)
	section("dlq stream", r.DLQStream.Error)
	section("consumer", r.Consumer.Error)
	if r.Consumer.Error == "" && !r.Consumer.Found && r.Stream.Error == "" {
		add("consumer: %s not found on stream %s (the sink has not started)", r.Consumer.Name, r.Stream.Name)
	}
	sk, st := r.Sink, r.Stream
	section("sink position", sk.Error)
	judgePosition(add, "sink position", sk, st)
	if sk.Fence != nil {
		// No holder recorded (a fresh install) and no live holder (the
		// daemon is down, or a sink stands by) are both states, not
		// problems; only a failed read is.
		section("sink fence", sk.Fence.Error)
	}
}

// judgeBacklog judges what waits on the sink (deferred events, lag, open
// dead letters) together: each says the sink is behind, stuck or needs an
// operator, whatever the positions say.
func (c *collector) judgeBacklog(add, warn func(string, ...any), section func(name, err string)) {
	r := c.r
	df := r.Deferred
	section("deferred events", df.Error)
	if df.Error == "" && df.Oldest != nil && df.OldestAgeSeconds > DeferredWarnAge.Seconds() {
		warn("deferred events: the oldest of %d (%d waiting for a parent, %d parts of incomplete transactions) was set aside %s ago, over %s: a wait ends in a dead letter after its ref.wait, an incomplete transaction after sink.txn_timeout; if neither happens the sink is not applying",
			df.Waiting+df.TxnParts, df.Waiting, df.TxnParts, secs(df.OldestAgeSeconds), DeferredWarnAge)
	}
	if c.opts.MaxLag > 0 && r.Lag.Error == "" && r.Lag.Seconds > c.opts.MaxLag.Seconds() {
		add("lag: %.0fs (%d events) is over the limit %s", r.Lag.Seconds, r.Lag.Events, c.opts.MaxLag)
	}
	d := r.DeadLetters
	section("dead letters", d.Error)
	if d.Open > 0 {
		add("dead letters: %d open (cdc dlq list)", d.Open)
	}
}

// judgePosition adds the problems of position sk on stream st (both
// read), naming it label ("sink position", or a lane's).
func judgePosition(add func(string, ...any), label string, sk SinkStatus, st StreamStatus) {
	if sk.Error == "" && st.Error == "" {
		switch {
		case streamRecreated(sk, st):
			// The sequence comparisons below mean nothing across streams.
			add(label+": stream re-created: the position belongs to another stream; see `cdc position adopt` (position: sequence %d of stream %s created %s; stream %s now: created %s)",
				sk.StreamSeq, sk.Stream, sk.StreamCreated.Format(microTime), st.Name, st.Created.Format(microTime))
		case !sk.Found && st.LastSeq > 0:
			add(label+": none for consumer %s while the stream holds %d events (the sink has not committed yet)", sk.Consumer, st.Messages)
		case sk.Found && sk.StreamSeq > st.LastSeq:
			add(label+": applied floor %d is past the stream's last sequence %d (was the stream %s recreated?)", sk.StreamSeq, st.LastSeq, st.Name)
		case sk.Found && st.Messages > 0 && st.FirstSeq > sk.StreamSeq+1:
			add(label+": the stream no longer holds sequences %d..%d the sink has not applied (retention removed them); replay the gap from MongoDB",
				sk.StreamSeq+1, st.FirstSeq-1)
		}
	}
}
