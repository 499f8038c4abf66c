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

// WriteText writes r for people: one block per section, "unknown:
// <error>" for what could not be read, and the problems last.
func WriteText(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	verdict := "HEALTHY"
	if !r.Healthy {
		verdict = fmt.Sprintf("UNHEALTHY (%d problems)", len(r.Problems))
	}
	if len(r.Warnings) > 0 {
		verdict += fmt.Sprintf(", %d warnings", len(r.Warnings))
	}
	p("cdc status at %s: %s", r.Time.Format(time.RFC3339), verdict)
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

	t := r.Tailer
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
		leaseText(p, t.Lease)
	}

	o := r.Oplog
	p("")
	p("Oplog")
	if o.Error != "" {
		p("  unknown: %s", o.Error)
	} else {
		p("  window\t%s (oldest %s, newest %s)", secs(o.WindowSeconds), ctText(o.Oldest), ctText(o.Newest))
		if o.HeadroomSeconds != nil && o.BehindSeconds != nil {
			flag := ""
			switch {
			case o.Lost:
				flag = "  LOST: the checkpoint is older than the oldest entry"
			case o.Low:
				flag = "  LOW"
			}
			p("  headroom\t%s%s", secs(*o.HeadroomSeconds), flag)
			p("  tailer behind\t%s (newest entry minus checkpoint)", secs(*o.BehindSeconds))
		} else {
			p("  headroom\tunknown: no checkpoint")
		}
	}

	for _, s := range []StreamStatus{r.Stream, r.DLQStream} {
		p("")
		p("Stream %s", s.Name)
		if s.Error != "" {
			p("  unknown: %s", s.Error)
			continue
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

	c := r.Consumer
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

	s := r.Sink
	p("")
	p("Sink position (cdc.sink_positions, consumer %s)", s.Consumer)
	switch {
	case s.Error != "":
		p("  unknown: %s", s.Error)
	case !s.Found:
		p("  none: the sink has not committed yet")
	default:
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

	lanesText(p, r.Lanes) // lanes.go

	df := r.Deferred
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

	l := r.Lag
	p("")
	p("Lag (Postgres behind the stream)")
	if l.Error != "" {
		p("  unknown: %s", l.Error)
	} else {
		p("  events\t%d (stream last sequence minus applied floor)", l.Events)
		p("  seconds\t%s (now minus the newest applied cluster time, while events are pending)", secs(l.Seconds))
	}

	d := r.DeadLetters
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

	verifyText(p, r.Verify) // verify.go

	cs := r.Collections
	p("")
	p("Collections")
	switch {
	case cs.Skipped:
		p("  not counted (--no-counts)")
	case cs.Error != "":
		p("  unknown: %s", cs.Error)
	default:
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

	if len(r.Warnings) > 0 {
		p("")
		p("Warnings")
		for _, w := range r.Warnings {
			p("  - %s", w)
		}
	}
	if len(r.Problems) > 0 {
		p("")
		p("Problems")
		for _, pr := range r.Problems {
			p("  - %s", pr)
		}
	}
	return tw.Flush()
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
