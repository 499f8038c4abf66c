package config

import (
	"fmt"
	"strings"

	"github.com/dustin/go-humanize"
)

// MinMemoryLimit is the smallest memory_limit accepted: below it the
// fixed costs (the runtime, the embedded NATS server, the drivers' pools)
// leave the budgets nothing.
const MinMemoryLimit = 64 << 20

// MemoryBytes parses memory_limit ("256MiB", "1GB", "0": none) with
// github.com/dustin/go-humanize (IEC and SI units, the forms operators
// write in Kubernetes and systemd). 0 means no limit.
func (c *Config) MemoryBytes() (int64, error) {
	s := strings.TrimSpace(c.MemoryLimit)
	if s == "" || s == "0" || strings.EqualFold(s, "off") {
		return 0, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size such as 256MiB or 1GB: %w", s, err)
	}
	if n < MinMemoryLimit {
		return 0, fmt.Errorf("%s is below the minimum of %s", humanize.IBytes(n), humanize.IBytes(MinMemoryLimit))
	}
	return int64(n), nil
}

// MemoryBudget is what memory_limit allows each in-flight buffer.
type MemoryBudget struct {
	// Limit is memory_limit in bytes (0: none; the budgets below are
	// then the defaults for 256 MiB).
	Limit int64
	// TailerInFlightBytes bounds the envelopes published and not yet
	// acknowledged by JetStream (besides tailer.max_in_flight's count).
	TailerInFlightBytes int64
	// SinkFetchBytes bounds what the sink's pull consumer buffers ahead of
	// the apply loop (besides its message count).
	SinkFetchBytes int64
}

// defaultBudgetBase is the limit the budgets are derived from when
// memory_limit is off.
const defaultBudgetBase = 256 << 20

// Budget derives the in-flight budgets from memory_limit: a sixteenth of
// it each for the tailer's unacknowledged publishes and the sink's fetch
// buffer. The rest is for what the budgets do not cover: the batch being
// applied, the JetStream file store's caches, the runtime and the GC's
// headroom (the soft limit makes the GC work harder before the process
// goes over it). Call after Validate.
func (c *Config) Budget() MemoryBudget {
	limit, err := c.MemoryBytes()
	if err != nil {
		limit = 0
	}
	base := limit
	if base == 0 {
		base = defaultBudgetBase
	}
	return MemoryBudget{Limit: limit, TailerInFlightBytes: base / 16, SinkFetchBytes: base / 16}
}
