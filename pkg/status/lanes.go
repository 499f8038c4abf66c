package status

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/sink"
)

// perLane is the Error of the report's Stream, Consumer and Sink sections
// with lanes configured: the default stream is not declared then (pkg/bus
// ensureChangeStreams), each lane has its own (Report.Lanes).
const perLane = "per lane with sink.lanes configured (see the lanes section)"

func (c *collector) laned() bool { return len(c.tgt.Lanes) > 0 }

// consumers are the sink's position keys: the consumer, or each lane's.
func (c *collector) consumers() []string {
	if !c.laned() {
		return []string{c.tgt.Consumer}
	}
	out := make([]string, len(c.tgt.Lanes))
	for i, l := range c.tgt.Lanes {
		out[i] = sink.LaneConsumer(c.tgt.Consumer, l.Name)
	}
	return out
}

// lanes fills Report.Lanes (lanes configured only): each lane's stream,
// position row and fence, lag; the live members and their assignment.
func (c *collector) lanes(ctx context.Context) {
	if !c.laned() {
		return
	}
	streams := bus.StreamsConfig{Stream: c.tgt.Stream}.WithLanes(bus.LanesFromConfig(c.tgt.Lanes))
	ls := &LanesStatus{MembersBucket: sink.MembersBucket(c.tgt.Stream), Members: []LaneMember{}, Items: []LaneStatus{}, Layout: streams.Layout()}
	c.r.Lanes = ls
	names := make([]string, len(c.tgt.Lanes))
	for i, l := range c.tgt.Lanes {
		names[i] = l.Name
		it := LaneStatus{Name: l.Name, Collections: slices.Clone(l.Collections), Stream: streams.LaneStream(l.Name)}
		st := StreamStatus{Name: it.Stream}
		if c.src.js == nil {
			st.Error = natsUnreachable
		} else {
			sctx, cancel := c.ctx(ctx)
			if s := c.streamInfo(sctx, &st); s != nil {
				it.StreamLayout = s.CachedInfo().Config.Metadata[bus.MetaLaneLayout]
			}
			cancel()
		}
		it.FirstSeq, it.LastSeq, it.Messages, it.StreamCreated, it.StreamError = st.FirstSeq, st.LastSeq, st.Messages, st.Created, st.Error
		it.Position = c.position(ctx, sink.LaneConsumer(c.tgt.Consumer, l.Name))
		it.Lag = lagOf(st, it.Position, c.opts.now())
		ls.Items = append(ls.Items, it)
	}
	owners, err := c.members(ctx)
	if err != nil {
		ls.MembersError = err.Error()
		return
	}
	assigned := sink.AssignOwners(names, owners)
	byOwner := map[string]*LaneMember{}
	for _, o := range owners {
		ls.Members = append(ls.Members, LaneMember{Owner: o, Lanes: []string{}})
	}
	for i := range ls.Members {
		byOwner[ls.Members[i].Owner] = &ls.Members[i]
	}
	for i := range ls.Items {
		it := &ls.Items[i]
		it.AssignedTo = assigned[it.Name]
		if m := byOwner[it.AssignedTo]; m != nil {
			m.Lanes = append(m.Lanes, it.Name) // in configured order
		}
	}
}

// members lists the live sink instances' owners, sorted (none when the
// bucket does not exist: no laned sink has started).
func (c *collector) members(ctx context.Context) ([]string, error) {
	if c.src.js == nil {
		return nil, errors.New(natsUnreachable)
	}
	mctx, cancel := c.ctx(ctx)
	defer cancel()
	owners, err := sink.MemberOwners(mctx, c.src.js, c.tgt.Stream)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return []string{}, nil
	}
	if err != nil {
		return nil, errors.New(oneLine(err))
	}
	slices.Sort(owners)
	return owners, nil
}

// lanesLag is the report's lag with lanes: the lanes' events summed, the
// largest of their seconds; unknown if any lane's is.
func (c *collector) lanesLag() LagStatus {
	var l LagStatus
	if c.r.Lanes == nil {
		return LagStatus{Error: "lanes not read"}
	}
	for _, it := range c.r.Lanes.Items {
		if it.Lag.Error != "" {
			return LagStatus{Error: fmt.Sprintf("lane %s: %s", it.Name, it.Lag.Error)}
		}
		l.Events += it.Lag.Events
		l.Seconds = max(l.Seconds, it.Lag.Seconds)
	}
	return l
}

// judgeLanes adds the lanes' problems and warnings: a lane's stream or
// position that could not be read, the position checks of judgePosition
// per lane, and a lane no live instance is assigned (nothing applies it).
func (c *collector) judgeLanes(add, warn func(string, ...any), section func(name, err string)) {
	ls := c.r.Lanes
	if ls == nil {
		return
	}
	section("sink members", ls.MembersError)
	var orphans []string
	for _, it := range ls.Items {
		label := "lane " + it.Name
		section(label+" stream", it.StreamError)
		section(label+" sink position", it.Position.Error)
		if it.StreamLayout != "" && it.StreamLayout != ls.Layout {
			add("%s: stream %s carries the lane layout %q, this configuration has %q: tailer and sinks must share sink.lanes (docs/runbook.md, \"Scaling the sink out with lanes\")",
				label, it.Stream, it.StreamLayout, ls.Layout)
		}
		st := StreamStatus{Name: it.Stream, FirstSeq: it.FirstSeq, LastSeq: it.LastSeq, Messages: it.Messages, Created: it.StreamCreated, Error: it.StreamError}
		judgePosition(add, label+" sink position", it.Position, st)
		if f := it.Position.Fence; f != nil {
			section(label+" fence", f.Error)
		}
		if ls.MembersError == "" && it.AssignedTo == "" {
			orphans = append(orphans, it.Name)
		}
	}
	if len(orphans) > 0 {
		warn("sink lanes: no live sink instance in %s, so no one applies lanes %s (is a sink running?)", ls.MembersBucket, strings.Join(orphans, ", "))
	}
}

// lanesText prints the lanes section.
func lanesText(p printer, ls *LanesStatus) {
	if ls == nil {
		return
	}
	p("")
	p("Sink lanes (members in %s)", ls.MembersBucket)
	p("  LANE\tSTREAM\tLAST SEQ\tAPPLIED\tLAG\tASSIGNED TO\tFENCE")
	for _, it := range ls.Items {
		last := fmt.Sprint(it.LastSeq)
		if it.StreamError != "" {
			last = "?"
		}
		applied, fence := "?", "?"
		switch pos := it.Position; {
		case pos.Error != "":
		case !pos.Found:
			applied, fence = "none", "none"
		default:
			applied = fmt.Sprint(pos.StreamSeq)
			if pos.Fence != nil {
				fence = laneFenceText(pos.Fence)
			}
		}
		lag := "?"
		if it.Lag.Error == "" {
			lag = fmt.Sprintf("%d (%s)", it.Lag.Events, secs(it.Lag.Seconds))
		}
		to := it.AssignedTo
		if to == "" {
			to = "-"
		}
		p("  %s\t%s\t%s\t%s\t%s\t%s\t%s", it.Name, it.Stream, last, applied, lag, to, fence)
	}
	for _, it := range ls.Items {
		if it.StreamError != "" {
			p("  %s stream unknown: %s", it.Name, it.StreamError)
		}
		if it.Position.Error != "" {
			p("  %s position unknown: %s", it.Name, it.Position.Error)
		}
	}
	switch {
	case ls.MembersError != "":
		p("  members unknown: %s", ls.MembersError)
	case len(ls.Members) == 0:
		p("  live members: none")
	default:
		p("  live members, with the lanes the rendezvous assignment gives each:")
		for _, m := range ls.Members {
			lanes := strings.Join(m.Lanes, ", ")
			if lanes == "" {
				lanes = "none"
			}
			p("    %s\t%s", m.Owner, lanes)
		}
	}
}

// laneFenceText is a lane's fence in one column: owner, epoch, since,
// whether its lock is held now.
func laneFenceText(f *FenceStatus) string {
	t := "no holder"
	if f.Owner != "" {
		t = f.Owner
	}
	t += fmt.Sprintf(" epoch %d", f.Epoch)
	if f.Since != nil {
		t += " since " + f.Since.Format(time.RFC3339)
	}
	switch {
	case f.Error != "":
		t += ", lock unknown"
	case f.Held == nil:
	case *f.Held:
		t += ", held"
	default:
		t += ", free"
	}
	return t
}
