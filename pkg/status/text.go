package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// printer writes one line of the text form: format and args as for
// fmt.Printf, tabs separating the cells that WriteText's tabwriter
// aligns.
type printer func(format string, args ...any)

// WriteText writes r for people: one block per section, "unknown:
// <error>" for what could not be read, and the problems last. Every
// section goes through one tabwriter, so the columns of a section's lines
// align.
func WriteText(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := printer(func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) })
	p("cdc status at %s: %s", r.Time.Format(time.RFC3339), verdictText(r))
	systemsText(p, r)
	tailerText(p, &r.Tailer)
	oplogText(p, &r.Oplog)
	for _, s := range []StreamStatus{r.Stream, r.DLQStream} {
		streamText(p, &s)
	}
	consumerText(p, &r.Consumer)
	sinkText(p, &r.Sink)
	lanesText(p, r.Lanes) // lanes.go
	deferredText(p, &r.Deferred)
	lagText(p, &r.Lag)
	deadLettersText(p, &r.DeadLetters)
	verifyText(p, r.Verify) // verify.go
	collectionsText(p, &r.Collections)
	listText(p, "Warnings", r.Warnings)
	listText(p, "Problems", r.Problems)
	return tw.Flush()
}

// verdictText is the first line's verdict: healthy or not, and how many
// problems and warnings.
func verdictText(r *Report) string {
	verdict := "HEALTHY"
	if !r.Healthy {
		verdict = fmt.Sprintf("UNHEALTHY (%d problems)", len(r.Problems))
	}
	if len(r.Warnings) > 0 {
		verdict += fmt.Sprintf(", %d warnings", len(r.Warnings))
	}
	return verdict
}

func systemsText(p printer, r *Report) {
	p("")
	p("Systems")
	natsLine := r.NATS.Address
	switch r.NATS.Mode {
	case ModeExternal:
		natsLine = "ok, external " + r.NATS.Address
	case ModeDaemon:
		natsLine = "ok, the running daemon's embedded server " + r.NATS.Address
	case ModeStoredState:
		natsLine = "daemon not running: read the stored state in " + r.NATS.StoreDir + " with a temporary server"
	}
	p("  NATS\t%s", reach(r.NATS.System, natsLine))
	p("  PostgreSQL\t%s", reach(r.Postgres, "ok, "+r.Postgres.Address))
	p("  MongoDB\t%s", reach(r.Mongo, "ok, "+r.Mongo.Address))
}

func tailerText(p printer, t *TailerStatus) {
	p("")
	p("Tailer checkpoint (%s/%s)", t.Bucket, t.Key)
	switch {
	case t.Error != "":
		p("  unknown: %s", t.Error)
	case !t.Found:
		p("  none saved yet")
	default:
		p("  cluster time\t%s", ctText(t.ClusterTime))
		p("  last event\t%s", ctText(t.LastEventClusterTime))
		if t.SavedAt != nil {
			p("  saved\t%s ago (%s)", secs(t.AgeSeconds), t.SavedAt.Format(time.RFC3339))
		}
		p("  events\t%d published since the checkpoint was created", t.Events)
		p("  resume token\t%s", string(t.ResumeToken))
		leaseText(p, t.Lease) // lease.go
	}
}

func oplogText(p printer, o *OplogStatus) {
	p("")
	p("Oplog")
	if o.Error != "" {
		p("  unknown: %s", o.Error)
		return
	}
	p("  window\t%s (oldest %s, newest %s)", secs(o.WindowSeconds), ctText(o.Oldest), ctText(o.Newest))
	if o.HeadroomSeconds == nil || o.BehindSeconds == nil {
		p("  headroom\tunknown: no checkpoint")
		return
	}
	flag := ""
	switch {
	case o.Lost:
		flag = "  LOST: the checkpoint is older than the oldest entry"
	case o.Low:
		flag = "  LOW"
	}
	p("  headroom\t%s%s", secs(*o.HeadroomSeconds), flag)
	p("  tailer behind\t%s (newest entry minus checkpoint)", secs(*o.BehindSeconds))
}

func streamText(p printer, s *StreamStatus) {
	p("")
	p("Stream %s", s.Name)
	if s.Error != "" {
		p("  unknown: %s", s.Error)
		return
	}
	p("  messages\t%d (%s)", s.Messages, bytesText(s.Bytes))
	p("  sequences\tfirst %d, last %d", s.FirstSeq, s.LastSeq)
	if s.LastTime != nil {
		p("  last message\t%s", s.LastTime.Format(time.RFC3339))
	}
	if s.Created != nil {
		p("  created\t%s", s.Created.Format(microTime))
	}
}

func consumerText(p printer, c *ConsumerStatus) {
	p("")
	p("Consumer %s", c.Name)
	switch {
	case c.Error != "":
		p("  unknown: %s", c.Error)
	case !c.Found:
		p("  not found")
	default:
		p("  pending\t%d not delivered, %d delivered and not acknowledged, %d redelivered", c.Pending, c.AckPending, c.Redelivered)
		p("  ack floor\tstream sequence %d (delivered up to %d)", c.AckFloorSeq, c.DeliveredSeq)
		p("  pulling now\t%d pull requests waiting", c.Waiting)
	}
}

func sinkText(p printer, s *SinkStatus) {
	p("")
	p("Sink position (cdc.sink_positions, consumer %s)", s.Consumer)
	switch {
	case s.Error != "":
		p("  unknown: %s", s.Error)
		return
	case !s.Found:
		p("  none: the sink has not committed yet")
		return
	}
	p("  applied floor\tstream sequence %d", s.StreamSeq)
	p("  cluster time\t%s", ctText(s.ClusterTime))
	if s.AppliedAt != nil {
		p("  committed at\t%s", s.AppliedAt.Format(time.RFC3339))
	}
	if s.StreamCreated != nil {
		p("  of stream\t%s created %s", s.Stream, s.StreamCreated.Format(microTime))
	} else {
		p("  of stream\t%s (creation time not recorded yet)", s.Stream)
	}
	if f := s.Fence; f != nil {
		p("  fence\t%s", fenceText(f))
	}
}

func deferredText(p printer, df *DeferredStatus) {
	p("")
	p("Deferred events (passed by the position, not applied yet)")
	switch {
	case df.Error != "":
		p("  unknown: %s", df.Error)
	case df.Waiting == 0 && df.TxnParts == 0:
		p("  none")
	default:
		p("  waiting\t%d (a parent under policy wait has not arrived)", df.Waiting)
		p("  transaction parts\t%d (their Mongo transaction is not whole yet)", df.TxnParts)
		p("  stored\t%s", bytesText(uint64(max(df.Bytes, 0))))
		if df.Oldest != nil {
			p("  oldest\tset aside %s ago (%s)", secs(df.OldestAgeSeconds), df.Oldest.Format(time.RFC3339))
		}
	}
}

func lagText(p printer, l *LagStatus) {
	p("")
	p("Lag (Postgres behind the stream)")
	if l.Error != "" {
		p("  unknown: %s", l.Error)
		return
	}
	p("  events\t%d (stream last sequence minus applied floor)", l.Events)
	p("  seconds\t%s (now minus the newest applied cluster time, while events are pending)", secs(l.Seconds))
}

func deadLettersText(p printer, d *DeadLetterStatus) {
	p("")
	p("Dead letters (open)")
	switch {
	case d.Error != "":
		p("  unknown: %s", d.Error)
	case d.Open == 0:
		p("  none")
	default:
		p("  COLLECTION\tCLASS\tCOUNT")
		for _, dc := range d.Count {
			p("  %s\t%s\t%d", dc.Collection, dc.Class, dc.Count)
		}
		p("  total\t\t%d", d.Open)
	}
}

func collectionsText(p printer, cs *CollectionsStatus) {
	p("")
	p("Collections")
	switch {
	case cs.Skipped:
		p("  not counted (--no-counts)")
		return
	case cs.Error != "":
		p("  unknown: %s", cs.Error)
		return
	}
	p("  COLLECTION\tTABLE\tROWS\tDOC VERSIONS\tTOMBSTONES\tMONGO")
	for _, it := range cs.Items {
		rows := num(it.Rows)
		if it.LiveRows != nil {
			rows += " (" + num(it.LiveRows) + " live)"
		}
		p("  %s\t%s\t%s\t%s\t%s\t%s", it.Collection, it.Table, rows, num(it.DocVersions), num(it.Tombstones), num(it.Mongo))
	}
	if cs.PostgresError != "" {
		p("  postgres counts unknown: %s", cs.PostgresError)
	}
	if cs.MongoError != "" {
		p("  mongo counts unknown: %s", cs.MongoError)
	}
	for _, it := range cs.Items {
		if it.Error != "" {
			p("  %s: %s", it.Collection, it.Error)
		}
	}
}

// listText writes a titled list (warnings, problems), nothing when it is
// empty.
func listText(p printer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	p("")
	p("%s", title)
	for _, it := range items {
		p("  - %s", it)
	}
}

func fenceText(f *FenceStatus) string {
	t := "no holder recorded"
	if f.Owner != "" {
		t = "taken by " + f.Owner
		if f.Since != nil {
			t += " at " + f.Since.Format(time.RFC3339)
		}
	}
	t += fmt.Sprintf(", epoch %d", f.Epoch)
	switch {
	case f.Error != "":
		t += "; lock unknown: " + f.Error
	case f.Held == nil:
	case *f.Held:
		t += "; lock held now (a sink applies)"
	default:
		t += "; lock free (no sink applies now)"
	}
	return t
}

func reach(s System, ok string) string {
	if s.Error != "" {
		return "unknown: " + s.Error
	}
	return ok
}

func ctText(c *ClusterTime) string {
	if c == nil {
		return "-"
	}
	return c.String() + " (" + c.Time.Format(time.RFC3339) + ")"
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

func num(n *int64) string {
	if n == nil {
		return "?"
	}
	return strconv.FormatInt(*n, 10)
}

func bytesText(b uint64) string {
	const unit = 1024
	if b < unit {
		return strconv.FormatUint(b, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTP"[exp])
}
