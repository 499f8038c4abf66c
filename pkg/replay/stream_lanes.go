package replay

import (
	"fmt"
	"slices"
	"strings"
)

// The lane choice of a stream replay (StreamLanes) and its refusals, apart
// from stream.go: with sink lanes, which streams a replay reads is decided
// before anything is read.

// LaneRequiredError: a sequence range was given with sink lanes
// configured but no lane. Every lane has a stream of its own that numbers
// its messages from 1, so a sequence means nothing without the stream it
// belongs to.
type LaneRequiredError struct {
	// Lanes are the configured lanes, Streams their streams (by index).
	Lanes, Streams []string
}

func (e *LaneRequiredError) Error() string {
	ls := make([]string, len(e.Lanes))
	for i, l := range e.Lanes {
		ls[i] = fmt.Sprintf("%s (stream %s)", l, e.Streams[i])
	}
	return fmt.Sprintf("%v: sink lanes are configured and each lane's stream numbers its messages itself, so --from-seq and --to-seq "+
		"need --lane, one of: %s; or replay every lane with --since", ErrBadRange, strings.Join(ls, ", "))
}

func (e *LaneRequiredError) Unwrap() error { return ErrBadRange }

// UnknownLaneError: the lane asked for is not a configured sink lane.
type UnknownLaneError struct {
	Lane string
	// Lanes are the configured lanes (none: no lanes are configured).
	Lanes []string
}

func (e *UnknownLaneError) Error() string {
	if len(e.Lanes) == 0 {
		return fmt.Sprintf("%v: --lane %q: no sink lanes are configured (sink.lanes), there is one stream: omit --lane", ErrUnknownLane, e.Lane)
	}
	return fmt.Sprintf("%v: --lane %q is not a configured sink lane; the lanes are: %s", ErrUnknownLane, e.Lane, strings.Join(e.Lanes, ", "))
}

func (e *UnknownLaneError) Unwrap() error { return ErrUnknownLane }

// StreamLanes checks cfg's lane choice and returns the lanes whose
// streams a replay reads, in order: "" (the default stream) without
// lanes, cfg.Lane, or with lanes and no Lane every lane (Since only:
// *LaneRequiredError for a sequence range). An unknown lane is
// *UnknownLaneError. Every lane is read even when Collections are given:
// the events of a Mongo transaction are in the lane of its first event,
// whichever collection they are of (bus.LaneRouter), so any lane's stream
// may hold some of a collection's events.
func StreamLanes(cfg StreamConfig) ([]string, error) {
	c := cfg.Streams
	if !c.Laned() {
		if cfg.Lane != "" {
			return nil, &UnknownLaneError{Lane: cfg.Lane}
		}
		return []string{""}, nil
	}
	names := c.LaneNames()
	if cfg.Lane != "" {
		if !slices.Contains(names, cfg.Lane) {
			return nil, &UnknownLaneError{Lane: cfg.Lane, Lanes: names}
		}
		return []string{cfg.Lane}, nil
	}
	if cfg.Since.IsZero() || cfg.FromSeq > 0 || cfg.ToSeq > 0 {
		streams := make([]string, len(names))
		for i, l := range names {
			streams[i] = c.LaneStream(l)
		}
		return nil, &LaneRequiredError{Lanes: names, Streams: streams}
	}
	return names, nil
}
