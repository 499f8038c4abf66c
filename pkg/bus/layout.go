package bus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// The lane layout (which lanes exist and which collections each carries)
// must be the same in every process of a deployment: a tailer that
// routes by one layout and sinks that read another would leave events in
// streams nobody applies, or apply a document's changes from two lanes
// whose order nothing relates. The layout is therefore stamped on the
// lane streams themselves, in their JetStream metadata, and every process
// checks it where it declares the streams (Ensure) and again while it
// runs (CheckLaneLayout): the streams are the one place tailer, sinks,
// replay and snapshot all see.

// Metadata keys on a lane stream.
const (
	// MetaLaneLayout is the layout (Layout) of the deployment that last
	// declared the stream.
	MetaLaneLayout = "cdc_lane_layout"
	// MetaLane is the stream's lane name.
	MetaLane = "cdc_lane"
)

// ErrLaneLayout marks a lane layout that disagrees with the one the
// streams carry while messages of the other layout are not applied yet.
// It is fatal: nothing a retry can change.
var ErrLaneLayout = errors.New("sink.lanes differs from the lane layout of the streams")

// LaneLayoutError is ErrLaneLayout with the detail an operator needs.
type LaneLayoutError struct {
	// Want is this process's layout; Have the one stamped on Stream.
	Want, Have string
	Stream     string
	// Pending lists the streams of the other layout that still hold
	// messages their durable consumers have not acknowledged, as
	// "stream (n pending)"; empty when the disagreement was found while
	// running (another process re-stamped the streams).
	Pending []string
}

func (e *LaneLayoutError) Error() string {
	if len(e.Pending) == 0 {
		return fmt.Sprintf("%v: this process has %q, stream %s now carries %q (another process with a different sink.lanes declared the lanes): "+
			"give every cdc tail, cdc sink and cdc run the same sink.lanes and restart them", ErrLaneLayout, e.Want, e.Stream, e.Have)
	}
	return fmt.Sprintf("%v: this process has %q, stream %s carries %q, and events routed by that layout are not applied yet: %s. "+
		"Run the sinks with the streams' sink.lanes until those streams are drained (cdc status shows each lane's lag), "+
		"then restart every process with the new sink.lanes; never run tailer and sinks with different sink.lanes",
		ErrLaneLayout, e.Want, e.Stream, e.Have, strings.Join(e.Pending, ", "))
}

// Unwrap returns ErrLaneLayout.
func (e *LaneLayoutError) Unwrap() error { return ErrLaneLayout }

// Layout is c's lanes in one canonical line: "name:coll+coll" per group,
// "name/N:..." for a group split by document id, groups in configured
// order joined by ";" ("" without lanes). It is what MetaLaneLayout
// holds; two configurations route every event the same way exactly when
// their layouts are equal.
func (c StreamsConfig) Layout() string {
	var groups []string
	seen := map[string]bool{}
	for _, l := range c.Lanes {
		g := l.Group
		if g == "" {
			g = l.Name
		}
		if seen[g] {
			continue
		}
		seen[g] = true
		head := g
		if l.Parts > 1 {
			head = fmt.Sprintf("%s/%d", g, l.Parts)
		}
		groups = append(groups, head+":"+strings.Join(l.Collections, "+"))
	}
	return strings.Join(groups, ";")
}

// laneStream is one stream stamped as a lane, as found on the server.
type laneStream struct {
	info *jetstream.StreamInfo
}

// stampedLaneStreams lists the streams stamped as lanes of c's change
// stream (name <Stream>_<lane>, MetaLane set), sorted by name.
func stampedLaneStreams(ctx context.Context, js jetstream.JetStream, c StreamsConfig) ([]laneStream, error) {
	var out []laneStream
	l := js.ListStreams(ctx)
	for info := range l.Info() {
		if info == nil || !strings.HasPrefix(info.Config.Name, c.Stream+"_") || info.Config.Metadata[MetaLane] == "" {
			continue
		}
		out = append(out, laneStream{info: info})
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].info.Config.Name < out[j].info.Config.Name })
	return out, nil
}

// undrained returns how many of s's messages some durable consumer has
// not acknowledged yet (ephemeral consumers, such as a replay's, do not
// count), or the stream's message count when it has no durable consumer:
// a stream nobody consumes is not drained unless it is empty.
func undrained(ctx context.Context, js jetstream.JetStream, s laneStream) (uint64, error) {
	if s.info.State.Msgs == 0 {
		return 0, nil
	}
	st, err := js.Stream(ctx, s.info.Config.Name)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", s.info.Config.Name, err)
	}
	var pending uint64
	durable := false
	l := st.ListConsumers(ctx)
	for ci := range l.Info() {
		if ci == nil || ci.Config.Durable == "" {
			continue
		}
		durable = true
		pending = max(pending, ci.NumPending+uint64(ci.NumAckPending))
	}
	if err := l.Err(); err != nil {
		return 0, fmt.Errorf("list consumers of %s: %w", s.info.Config.Name, err)
	}
	if !durable {
		return s.info.State.Msgs, nil
	}
	return pending, nil
}

// checkLayoutAtDeclare runs before the lane streams are declared. The
// layout may change only when every message routed by the old one is
// applied: if any stamped stream carries another layout, or belongs to no
// lane of c, and holds messages not yet acknowledged by its durable
// consumers, it returns a *LaneLayoutError. It returns the stamped
// streams that are not lanes of c (retired: restamped with c's layout by
// the caller, so a process still running the old layout finds the new one
// on every stream).
func checkLayoutAtDeclare(ctx context.Context, js jetstream.JetStream, c StreamsConfig) ([]laneStream, error) {
	stamped, err := stampedLaneStreams(ctx, js, c)
	if err != nil {
		return nil, err
	}
	want := c.Layout()
	mine := map[string]bool{}
	for _, l := range c.Lanes {
		mine[c.LaneStream(l.Name)] = true
	}
	var retired []laneStream
	var pending []string
	have, haveStream := "", ""
	for _, s := range stamped {
		name, layout := s.info.Config.Name, s.info.Config.Metadata[MetaLaneLayout]
		same := layout == want && mine[name]
		if same {
			continue
		}
		if !mine[name] {
			retired = append(retired, s)
		}
		if haveStream == "" || layout != want {
			have, haveStream = layout, name
		}
		n, err := undrained(ctx, js, s)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			pending = append(pending, fmt.Sprintf("%s (%d pending)", name, n))
		}
	}
	if len(pending) > 0 {
		return nil, &LaneLayoutError{Want: want, Have: have, Stream: haveStream, Pending: pending}
	}
	return retired, nil
}

// restamp sets MetaLaneLayout of a retired lane stream to layout (its
// other settings unchanged).
func restamp(ctx context.Context, js jetstream.JetStream, s laneStream, layout string) error {
	cfg := s.info.Config
	md := make(map[string]string, len(cfg.Metadata))
	for k, v := range cfg.Metadata {
		md[k] = v
	}
	md[MetaLaneLayout] = layout
	cfg.Metadata = md
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("restamp retired lane stream %s: %w", cfg.Name, err)
	}
	return nil
}

// CheckLaneLayout compares the layout stamped on c's first lane stream
// with c's (nothing to do without lanes): a *LaneLayoutError when another
// process declared the lanes with a different sink.lanes since this one
// started. Processes call it periodically (the sink every membership
// round, the tailer with its checkpoint), so a mismatch that started
// while the streams were drained still stops the process that lost.
func CheckLaneLayout(ctx context.Context, js jetstream.JetStream, c StreamsConfig) error {
	if !c.Laned() {
		return nil
	}
	name := c.LaneStream(c.Lanes[0].Name)
	st, err := js.Stream(ctx, name) // one STREAM.INFO request: CachedInfo is fresh
	if err != nil {
		return fmt.Errorf("lane stream %s: %w", name, err)
	}
	if have := st.CachedInfo().Config.Metadata[MetaLaneLayout]; have != c.Layout() {
		return &LaneLayoutError{Want: c.Layout(), Have: have, Stream: name}
	}
	return nil
}
