package verify

import (
	"fmt"
	"time"
)

// Config configures a Verifier. Zero fields take the defaults of Default.
type Config struct {
	// Database is the source MongoDB database. Required.
	Database string
	// Collections are the collections to verify, each with a mapping.
	// Required (the CLI passes every replicated collection by default).
	Collections []string
	// Replicated are all the collections the sink replicates: a change to
	// any of them keeps the sink busy. Default: Collections.
	Replicated []string
	// Consumer names the sink's row in cdc.sink_positions. Default
	// "cdc-sink".
	Consumer string
	// LaneConsumers, with sink lanes, are every lane's consumer (the
	// settled position is then the oldest of theirs); nil without lanes.
	LaneConsumers []string
	// Sample, when positive, compares a strided sample of about Sample
	// documents per collection (with a random offset) instead of every
	// document; counts, id_map coverage, FK, stray id_map, enum and
	// ledger checks still cover everything, and money_sums covers the
	// sampled documents. Default 0 (every document).
	Sample int
	// ChunkSize is how many documents are read and compared at a time; it
	// bounds memory. Default 1000.
	ChunkSize int
	// RecheckWait bounds how long a mismatch may wait for the sink to
	// catch up before it is reported. Default 30s.
	RecheckWait time.Duration
	// Examples is how many mismatches each check keeps as examples (its
	// counts are always complete). Default 10.
	Examples int
	// QueryTimeout bounds each database operation. Default 5m.
	QueryTimeout time.Duration
}

// Default returns the defaults.
func Default() Config {
	return Config{
		Consumer:     "cdc-sink",
		ChunkSize:    1000,
		RecheckWait:  30 * time.Second,
		Examples:     10,
		QueryTimeout: 5 * time.Minute,
	}
}

// withDefaults fills zero fields from Default.
func (c Config) withDefaults() Config {
	d := Default()
	if c.Consumer == "" {
		c.Consumer = d.Consumer
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = d.ChunkSize
	}
	if c.RecheckWait == 0 {
		c.RecheckWait = d.RecheckWait
	}
	if c.Examples == 0 {
		c.Examples = d.Examples
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = d.QueryTimeout
	}
	if len(c.Replicated) == 0 {
		c.Replicated = c.Collections
	}
	return c
}

// Validate checks the configuration (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Database == "":
		return fmt.Errorf("%w: database is required", ErrInvalidConfig)
	case len(c.Collections) == 0:
		return fmt.Errorf("%w: no collections to verify", ErrInvalidConfig)
	case c.Sample < 0:
		return fmt.Errorf("%w: sample must not be negative, got %d", ErrInvalidConfig, c.Sample)
	case c.ChunkSize < 1 || c.ChunkSize > 100_000:
		return fmt.Errorf("%w: chunk size must be between 1 and 100000, got %d", ErrInvalidConfig, c.ChunkSize)
	case c.RecheckWait < 0:
		return fmt.Errorf("%w: recheck wait must not be negative, got %s", ErrInvalidConfig, c.RecheckWait)
	case c.Examples < 0:
		return fmt.Errorf("%w: examples must not be negative, got %d", ErrInvalidConfig, c.Examples)
	case c.QueryTimeout < 0:
		return fmt.Errorf("%w: query timeout must not be negative, got %s", ErrInvalidConfig, c.QueryTimeout)
	}
	return nil
}
