package tailer_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/tailer"
)

// wireMsg is one message published on the change subjects, as a plain
// NATS subscriber sees it: every publish, including those JetStream then
// drops as duplicates.
type wireMsg struct {
	id, by string
	at     time.Time
}

// watchWire records every message published on the rig's change subjects.
func (r *rig) watchWire() func() []wireMsg {
	r.t.Helper()
	var mu sync.Mutex
	var seen []wireMsg
	sub, err := r.js.Conn().Subscribe(r.sc.SubjectPrefix+".>", func(m *nats.Msg) {
		mu.Lock()
		seen = append(seen, wireMsg{id: m.Header.Get(jetstream.MsgIDHeader), by: m.Header.Get(tailer.HeaderTailer), at: time.Now()})
		mu.Unlock()
	})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.js.Conn().Flush(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func() []wireMsg {
		mu.Lock()
		defer mu.Unlock()
		return append([]wireMsg(nil), seen...)
	}
}

// storedMsg is one message of the change stream.
type storedMsg struct {
	seq    uint64
	id, by string
}

// stored reads every message of the change stream.
func (r *rig) stored() []storedMsg {
	r.t.Helper()
	s, err := r.js.Stream(r.ctx, r.sc.Stream)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []storedMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(r.ctx, seq)
		if err != nil {
			r.t.Fatalf("stream message %d: %v", seq, err)
		}
		out = append(out, storedMsg{seq: seq, id: m.Header.Get(jetstream.MsgIDHeader), by: m.Header.Get(tailer.HeaderTailer)})
	}
	return out
}

// TestPausedLeaderPublishesNothingThatCounts (acceptance 3): the active
// tailer freezes in its publish path (a long GC pause, a network stall)
// past its lease; a standby takes over and publishes the changes made
// meanwhile; then the old leader wakes. It publishes nothing after waking
// when the freeze was before its lease check (its lease ran out, the
// renewal finds the checkpoint moved, it stands by). Frozen between the
// check and the publish (the one window the lease cannot close), it sends
// exactly the one message it was about to send, which JetStream drops as a
// duplicate of the new leader's (same Nats-Msg-Id). Either way the stream
// holds every change exactly once, the checkpoint is written by the new
// leader only, and the old leader ends standing by.
func TestPausedLeaderPublishesNothingThatCounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		// afterCheck freezes between the lease check and the publish.
		afterCheck bool
		// maxLate is how many messages the old leader may send after
		// waking (each must be a duplicate).
		maxLate int
	}{
		{"frozen before the lease check", false, 0},
		{"frozen between the lease check and the publish", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, -1)
			const old, next = "tailer-a:1:0001", "tailer-b:2:0002"
			wire := r.watchWire()
			var frozen atomic.Bool
			wake, stuck := make(chan struct{}), make(chan struct{}, 1)
			hook := func(ctx context.Context) {
				if !frozen.Load() {
					return
				}
				select {
				case stuck <- struct{}{}:
				default:
				}
				select {
				case <-wake:
				case <-ctx.Done():
				}
			}
			core, logs := observer.New(zap.InfoLevel)
			recA, recB := &recorder{}, &recorder{}
			r.run(r.tailerWith(old, recA, zap.New(core), func(c *tailer.Config) {
				if tc.afterCheck {
					c.Hooks.AfterLeaseCheck = hook
				} else {
					c.Hooks.BeforePublish = hook
				}
			}))
			r.insert(10, 50)
			eventually(t, 20*time.Second, "the leader publishing 10 events", func() bool {
				cp, _ := r.checkpoint()
				return cp != nil && cp.Owner == old && cp.Events == 10
			})
			r.run(r.tailer(next, recB, nil))
			eventually(t, 10*time.Second, "the second tailer standing by", func() bool { return recB.lastStandby() == old })
			seen := r.watchWrites()

			// Freeze the leader on the next change it publishes.
			frozen.Store(true)
			r.insert(5, 50)
			select {
			case <-stuck:
			case <-time.After(20 * time.Second):
				t.Fatal("the leader never reached its publish path")
			}
			frozenAt := time.Now()
			eventually(t, 20*time.Second, "the standby taking over and publishing the 5 changes", func() bool {
				cp, _ := r.checkpoint()
				return cp.Owner == next && cp.Events == 15 && r.streamState().Msgs == 15
			})
			if d := time.Since(frozenAt); d < rigTakeover {
				t.Fatalf("taken over %s after the freeze, before the takeover time %s", d, rigTakeover)
			}
			// Wake the old leader.
			frozen.Store(false)
			wokeAt := time.Now()
			close(wake)
			eventually(t, 10*time.Second, "the old leader standing by for the new one", func() bool { return recA.lastStandby() == next })
			r.insert(3, 50)
			eventually(t, 20*time.Second, "the new leader publishing 3 more", func() bool {
				cp, _ := r.checkpoint()
				return cp.Events == 18 && r.streamState().Msgs == 18
			})

			// The stream: every change once; the old leader's messages are
			// the 10 it published before the freeze, all before the new
			// leader's.
			msgs := r.stored()
			ids := map[string]bool{}
			byOld, byNext := 0, 0
			for _, m := range msgs {
				if ids[m.id] {
					t.Fatalf("message id %s stored twice", m.id)
				}
				ids[m.id] = true
				switch m.by {
				case old:
					if byNext > 0 {
						t.Fatalf("sequence %d by the old leader after the new leader's first message", m.seq)
					}
					byOld++
				case next:
					byNext++
				default:
					t.Fatalf("sequence %d has %s %q", m.seq, tailer.HeaderTailer, m.by)
				}
			}
			if len(msgs) != 18 || byOld != 10 || byNext != 8 {
				t.Fatalf("stream: %d messages, %d by the old leader, %d by the new one; want 18, 10, 8", len(msgs), byOld, byNext)
			}
			// On the wire: what the old leader sent after waking is at most
			// the message it was frozen on, a duplicate of a stored one.
			late := 0
			for _, m := range wire() {
				if m.by != old || m.at.Before(wokeAt) {
					continue
				}
				late++
				if !ids[m.id] {
					t.Fatalf("the old leader published %s after waking, which the stream does not hold from the new leader", m.id)
				}
			}
			if late > tc.maxLate {
				t.Fatalf("the old leader sent %d messages after waking, want at most %d", late, tc.maxLate)
			}
			// The checkpoint: written only by the new leader since its claim.
			claimed := false
			for _, w := range seen() {
				claimed = claimed || w.cp.Owner == next
				if claimed && w.cp.Owner != next {
					t.Fatalf("revision %d written by %s after the takeover", w.rev, w.cp.Owner)
				}
			}
			cp, _ := r.checkpoint()
			if cp.LastTakeover == nil || cp.LastTakeover.From != old || cp.LastTakeover.To != next ||
				cp.LastTakeover.Reason != checkpoint.TakeoverExpired || cp.LastTakeover.QuietMillis < rigTakeover.Milliseconds() || cp.Takeovers != 1 {
				t.Fatalf("checkpoint's takeover record: %+v (takeovers %d)", cp.LastTakeover, cp.Takeovers)
			}
			if cp.HeldSince == nil || !cp.HeldSince.Equal(cp.LastTakeover.At) {
				t.Fatalf("held since %v, want the takeover's %v", cp.HeldSince, cp.LastTakeover.At)
			}
			a, b := recA.counts(), recB.counts()
			if len(b.takeovers) != 1 || b.takeovers[0].From != old || len(a.takeovers) != 0 {
				t.Fatalf("takeover reports: old %+v, new %+v", a.takeovers, b.takeovers)
			}
			if tc.afterCheck {
				// The lease check passed before the freeze: the late publish
				// went out; then the next heartbeat or lease check found the
				// checkpoint moved.
				if a.lapses > 1 {
					t.Fatalf("old leader's lease lapses %d, want at most 1", a.lapses)
				}
			} else if a.lapses != 1 || logs.FilterMessageSnippet("the tailer's lease ran out before it was renewed").Len() != 1 {
				t.Fatalf("old leader's lease lapses %d, lapse lines %d; want 1 each", a.lapses, logs.FilterMessageSnippet("lease ran out").Len())
			}
			if a.lease[len(a.lease)-1] != "-" || b.lease[len(b.lease)-1] != "held" {
				t.Fatalf("lease reports: old %v, new %v", a.lease, b.lease)
			}
		})
	}
}
