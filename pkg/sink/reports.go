package sink

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
)

// report runs the periodic reports of one consume until ctx ends: lag
// every 2 s, trimming every Config.TrimEvery, the open dead letters at
// once and every 30 s. They run on their own clock, so lag keeps moving
// while a batch is stuck retrying (Postgres down): that is when it
// matters.
func (s *Sink) report(ctx context.Context, cons jetstream.Consumer) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	trim := time.NewTicker(s.cfg.TrimEvery)
	defer trim.Stop()
	s.reportDeadLetters(ctx)
	dls := time.NewTicker(30 * time.Second)
	defer dls.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.reportLag(ctx, cons)
		case <-trim.C:
			s.trim(ctx)
		case <-dls.C:
			s.reportDeadLetters(ctx)
		}
	}
}

// publishDeadLetters copies dead letters to the DLQ stream, for consumers
// that watch it. cdc.dead_letters (committed with the batch) is the record
// of truth; a copy that cannot be published is logged at error level and
// stays visible there.
func (s *Sink) publishDeadLetters(ctx context.Context, dls []DeadLetter) {
	for _, dl := range dls {
		msg := &nats.Msg{
			Subject: s.cfg.Streams.DLQSubject(dl.DB, dl.Coll),
			Data:    dl.Envelope,
			Header:  nats.Header{},
		}
		msg.Header.Set(jetstream.MsgIDHeader, "dlq:"+dl.EventID)
		msg.Header.Set("Content-Type", event.ContentType)
		msg.Header.Set("Cdc-Error-Class", string(dl.Class))
		msg.Header.Set("Cdc-Doc-Key", dl.DocKey)
		msg.Header.Set("Cdc-Stream-Seq", strconv.FormatUint(dl.StreamSeq, 10))
		msg.Header.Set("Cdc-Stream", s.cfg.Streams.Stream) // the lane's stream with lanes: its sequences are its own
		reason := dl.Reason
		if len(reason) > 1024 {
			reason = reason[:1024]
		}
		msg.Header.Set("Cdc-Reason", reason)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.js.PublishMsg(pctx, msg, jetstream.WithExpectStream(s.cfg.Streams.DLQStream))
		cancel()
		if err != nil {
			s.log.Error("dead letter not copied to the DLQ stream (it is in cdc.dead_letters)",
				zap.String("event_id", dl.EventID), zap.String("stream", s.cfg.Streams.DLQStream), zap.Error(err))
		}
	}
}

// trim frees space in a size-limited change stream: with the discard
// policy new a full stream refuses the tailer's publishes, and applied
// messages are not removed by anything else (limits retention). It purges
// only what is resolved in Postgres (the committed position, a true
// low-water mark) and what every other consumer of the stream has
// acknowledged. A failure is logged and left to the next round: the stream
// stays full meanwhile, which the tailer reports loudly (CDCStreamFull).
func (s *Sink) trim(ctx context.Context) {
	if s.cfg.Streams.MaxBytes <= 0 {
		return
	}
	floor := s.committed.Load()
	other, by, ok, err := bus.ConsumersFloor(ctx, s.js, s.cfg.Streams.Stream, s.cfg.Consumer)
	if err != nil {
		s.log.Warn("trim: cannot read the stream's other consumers; not trimming this round", zap.Error(err))
		return
	}
	if ok && other < floor {
		floor = other
	}
	purged, err := bus.TrimApplied(ctx, s.js, s.cfg.Streams.Stream, floor, TrimHighWater)
	if err != nil {
		s.log.Warn("trim: could not free space in the change stream", zap.Error(err), zap.Uint64("floor", floor))
		return
	}
	if purged > 0 {
		f := []zap.Field{zap.String("stream", s.cfg.Streams.Stream), zap.Uint64("purged", purged), zap.Uint64("floor", floor),
			zap.Uint64("applied", s.committed.Load())}
		if ok && other < s.committed.Load() {
			f = append(f, zap.String("held_by_consumer", by))
		}
		s.log.Info("trimmed applied messages from the size-limited change stream", f...)
	}
}

// reportDeadLetters reads the open dead letters per collection for the
// metrics; a failure is left to the next round (Postgres being away is
// reported by the apply path and /readyz).
func (s *Sink) reportDeadLetters(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	counts, err := state.OpenDeadLetterCounts(qctx, s.pool)
	if err != nil {
		s.log.Debug("open dead letters for the metrics", zap.Error(err))
		return
	}
	open := map[string]int64{}
	for _, c := range s.set.Collections() {
		open[c] = 0 // every replicated collection has a series: the alert clears
	}
	for _, c := range counts {
		open[c.Collection] += c.Count
	}
	s.metrics.SetOpenDeadLetters(open)
}

// reportLag reads the consumer's pending count for the lag metrics; a
// failure is left to the next round (the apply path reports real errors).
func (s *Sink) reportLag(ctx context.Context, cons jetstream.Consumer) {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ci, err := cons.Info(ictx)
	if err != nil {
		s.log.Debug("consumer info for lag", zap.Error(err))
		return
	}
	s.metrics.SetLag(ci.NumPending+uint64(ci.NumAckPending), event.Unpack(s.lastApplied.Load()))
}
