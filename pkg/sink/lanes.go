package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/amanat/cdc/pkg/bus"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/transform"
)

// LaneConsumer is the durable consumer (and position row, and fence) of
// lane: the base consumer name without lanes, base_lane with them.
func LaneConsumer(base, lane string) string {
	if lane == "" {
		return base
	}
	return base + "_" + lane
}

// LaneConfig returns cfg for lane's Sink: its consumer, and Streams.Stream
// its stream (bus.StreamsConfig.ForLane).
func LaneConfig(cfg Config, lane string) Config {
	cfg.Consumer = LaneConsumer(cfg.Consumer, lane)
	cfg.Streams = cfg.Streams.ForLane(lane)
	return cfg
}

// LaneRunner runs, in one sink instance, a Sink per lane assigned to it
// (members.go): it renews its membership every Heartbeat, computes the
// rendezvous assignment over the live members, starts the lanes assigned
// to it and stops the others gracefully (the Sink's Run returns and
// releases the fence, so the new holder takes the lane at its next
// standby poll). A lane whose holder died is taken when its Postgres
// advisory lock is free (the holder's session ended); until then its new
// Sink stands by. Create with NewLaneRunner; Run blocks.
type LaneRunner struct {
	js      jetstream.JetStream
	pool    *pgxpool.Pool
	set     *transform.Set
	cfg     Config
	lanes   []string
	log     *zap.Logger
	metrics Metrics
	hooks   *Hooks
	// Heartbeat is the membership renewal period (0: DefaultHeartbeat).
	Heartbeat time.Duration
	// noLeave (tests) skips deleting the membership key on return, as a
	// killed process would.
	noLeave bool
	// assigned reports the lanes this instance runs after each
	// reassignment (tests; nil: none).
	assigned func([]string)
}

// NewLaneRunner returns a runner of cfg.Streams' lanes (which must be
// configured: without lanes run one Sink, as before lanes existed).
func NewLaneRunner(js jetstream.JetStream, pool *pgxpool.Pool, set *transform.Set, cfg Config, log *zap.Logger, m Metrics, hooks *Hooks) *LaneRunner {
	if m == nil {
		m = noMetrics{}
	}
	cfg.defaults()
	return &LaneRunner{js: js, pool: pool, set: set, cfg: cfg, lanes: cfg.Streams.LaneNames(), log: log, metrics: m, hooks: hooks}
}

type laneRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Run runs the assigned lanes until ctx ends (nil: every lane stopped and
// its fence released, the membership key deleted) or a lane's Sink fails
// fatally (that error, after stopping the others).
func (r *LaneRunner) Run(ctx context.Context) error {
	if !r.cfg.Streams.Laned() {
		return errors.New("sink lane runner: no lanes configured")
	}
	hb := r.Heartbeat
	if hb <= 0 {
		hb = DefaultHeartbeat
	}
	m, err := joinMembers(ctx, r.js, MembersBucket(r.cfg.Streams.Stream), r.cfg.Owner, hb, r.cfg.Streams.Replicas)
	if err != nil {
		return err
	}
	running := runningLanes{}
	failed := make(chan error, len(r.lanes))
	defer func() {
		for l := range running {
			running.stop(l)
		}
		if !r.noLeave {
			r.leave(ctx, m)
		}
	}()
	tick := time.NewTicker(hb)
	defer tick.Stop()
	var lastBeat time.Time
	var prev []string
	for {
		r.metrics.Alive()
		live, err := r.round(ctx, m, &lastBeat)
		if err != nil {
			r.log.Warn("sink membership round failed", zap.Error(err))
		}
		if err := r.checkLayout(ctx); err != nil {
			return err
		}
		if time.Since(lastBeat) >= MemberTTLFactor*hb {
			// The others no longer see this instance: they take its
			// lanes; let them (the fence would stop this one anyway).
			live = nil
		}
		r.reassign(ctx, running, r.assignedTo(live, m.key), failed)
		prev = r.announce(running, len(live), prev)
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case <-tick.C:
		}
	}
}

// runningLanes are the lanes this instance runs, by name.
type runningLanes map[string]*laneRun

// stop stops lane's Sink and waits until its Run returned.
func (rl runningLanes) stop(lane string) {
	lr := rl[lane]
	lr.cancel()
	<-lr.done
	delete(rl, lane)
}

// leave deletes this instance's membership key, so the others take its
// lanes now rather than after its TTL.
func (r *LaneRunner) leave(ctx context.Context, m *members) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := m.leave(lctx); err != nil {
		r.log.Warn("could not leave the sink members bucket; the others take this instance's lanes after its TTL", zap.Error(err))
	}
}

// assignedTo is the set of lanes the rendezvous assignment over the live
// members gives key (none when live is nil).
func (r *LaneRunner) assignedTo(live []string, key string) map[string]bool {
	want := map[string]bool{}
	if live == nil {
		return want
	}
	for lane, holder := range Assign(r.lanes, live) {
		if holder == key {
			want[lane] = true
		}
	}
	return want
}

// reassign stops the running lanes not in want and starts those of want
// not running.
func (r *LaneRunner) reassign(ctx context.Context, running runningLanes, want map[string]bool, failed chan<- error) {
	for l := range running {
		if !want[l] {
			r.log.Info("lane no longer assigned to this instance: stopping it", zap.String("lane", l))
			running.stop(l)
		}
	}
	for _, l := range r.lanes { // in configured order: logs and tests read better
		if want[l] && running[l] == nil {
			running[l] = r.startLane(ctx, l, failed)
		}
	}
}

// announce logs the running lanes when they differ from prev (and tells
// the assigned callback), reports the role and lane metrics, and returns
// the running lanes in configured order.
func (r *LaneRunner) announce(running runningLanes, members int, prev []string) []string {
	names := make([]string, 0, len(running))
	for _, l := range r.lanes {
		if running[l] != nil {
			names = append(names, l)
		}
	}
	if fmt.Sprint(names) != fmt.Sprint(prev) {
		r.log.Info("sink lanes assigned", zap.Strings("lanes", names), zap.Int("members", members), zap.String("self", r.cfg.Owner))
		prev = names
		if r.assigned != nil {
			r.assigned(names)
		}
	}
	role := "standby"
	if len(names) > 0 {
		role = "active"
	}
	r.metrics.SetRole(role, r.cfg.Owner)
	r.reportLanes(running) // lanemetrics.go
	return prev
}

// checkLayout compares the lane layout stamped on the streams with this
// instance's (bus.CheckLaneLayout) and returns the *bus.LaneLayoutError
// when they differ: another process declared other lanes, and applying
// by this layout would read lanes the tailer no longer feeds. Failing to
// read the stamp is logged and retried next round.
func (r *LaneRunner) checkLayout(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := bus.CheckLaneLayout(cctx, r.js, r.cfg.Streams)
	if errors.Is(err, bus.ErrLaneLayout) {
		return err
	}
	if err != nil && ctx.Err() == nil {
		r.log.Warn("could not read the lane layout stamped on the streams", zap.Error(err))
	}
	return nil
}

// round renews the membership and lists the live members (including this
// one once its heartbeat succeeded).
func (r *LaneRunner) round(ctx context.Context, m *members, lastBeat *time.Time) ([]string, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.beat(rctx, r.cfg.Owner); err != nil {
		return nil, err
	}
	*lastBeat = time.Now()
	live, err := m.list(rctx)
	if err != nil {
		return nil, err
	}
	found := false
	for _, k := range live {
		found = found || k == m.key
	}
	if !found {
		live = append(live, m.key)
	}
	return live, nil
}

func (r *LaneRunner) startLane(ctx context.Context, lane string, failed chan<- error) *laneRun {
	lctx, cancel := context.WithCancel(ctx)
	lr := &laneRun{cancel: cancel, done: make(chan struct{})}
	cfg := LaneConfig(r.cfg, lane)
	s := New(r.js, r.pool, r.set, cfg, r.log.With(zap.String("lane", lane)), laneMetrics{r.metrics, lane}, r.hooks)
	r.log.Info("lane assigned to this instance: starting it (it takes the lane once the previous holder's fence is free)",
		zap.String("lane", lane), zap.String("consumer", cfg.Consumer), zap.String("stream", cfg.Streams.Stream))
	go func() {
		defer close(lr.done)
		if err := s.Run(lctx); err != nil {
			select { // the first failure stops the runner; later ones add nothing
			case failed <- fmt.Errorf("lane %s: %w", lane, err):
			default:
			}
		}
	}()
	return lr
}

// MemberOwners returns the owners of the live members of the sink
// instances of stream (for status and tests).
func MemberOwners(ctx context.Context, js jetstream.JetStream, stream string) ([]string, error) {
	kv, err := js.KeyValue(ctx, MembersBucket(stream))
	if err != nil {
		return nil, fmt.Errorf("members bucket: %w", err)
	}
	m := &members{kv: kv}
	keys, err := m.list(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = memberOwner(k)
	}
	return out, nil
}
