package tailer

import (
	"time"

	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/event"
)

// Metrics receives the tailer's counters; nil-safe no-op by default.
type Metrics interface {
	EventRead(coll string, op event.Op)
	EventPublished(coll string)
	CheckpointSaved(ct event.ClusterTime)
	// Retry counts a restart from the checkpoint after an error.
	Retry()
	// Alive reports that the read loop went round (an event or an idle
	// getMore), or that a standby checked the checkpoint.
	Alive()
	// Standby reports that this tailer stands by (true, with the
	// checkpoint's holder) or writes the checkpoint (false, "").
	Standby(standby bool, holder string)
	// StreamFull reports a publish refused by a full stream (true, once
	// per refused attempt) and the first acknowledgement after it (false).
	StreamFull(full bool)
	// Failing reports since when retried errors have lasted (zero: the
	// tailer works), whether that is past Config.FailingAfter, and the
	// last error.
	Failing(since time.Time, failing bool, cause string)
	// Lease reports whether this tailer holds a valid lease on the
	// checkpoint (true, with since when its tenure began) or not (false,
	// zero: standing by, deposed, lapsed or released).
	Lease(held bool, since time.Time)
	// TookOver reports a takeover this tailer made (lease.go).
	TookOver(tk checkpoint.Takeover)
	// LeaseLapsed reports that this tailer's lease ran out before it was
	// renewed: it publishes nothing until a revision-checked write
	// succeeds.
	LeaseLapsed()
}

type noMetrics struct{}

func (noMetrics) EventRead(string, event.Op)        {}
func (noMetrics) EventPublished(string)             {}
func (noMetrics) CheckpointSaved(event.ClusterTime) {}
func (noMetrics) Retry()                            {}
func (noMetrics) Alive()                            {}
func (noMetrics) Standby(bool, string)              {}
func (noMetrics) StreamFull(bool)                   {}
func (noMetrics) Failing(time.Time, bool, string)   {}
func (noMetrics) Lease(bool, time.Time)             {}
func (noMetrics) TookOver(checkpoint.Takeover)      {}
func (noMetrics) LeaseLapsed()                      {}
