package tailer_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/amanat/cdc/pkg/checkpoint"
)

// write is one observed checkpoint revision.
type write struct {
	rev uint64
	cp  *checkpoint.Checkpoint
}

// watchWrites records every later write of the checkpoint key.
func (r *rig) watchWrites() func() []write {
	r.t.Helper()
	kv, err := r.js.KeyValue(r.ctx, r.sc.CheckpointBucket)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	r.t.Cleanup(cancel)
	w, err := kv.Watch(ctx, r.store.Key(), jetstream.UpdatesOnly())
	if err != nil {
		r.t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []write
	go func() {
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			cp, err := checkpoint.Decode(e.Value())
			if err != nil {
				r.t.Errorf("watched revision %d: %v", e.Revision(), err)
				continue
			}
			mu.Lock()
			seen = append(seen, write{e.Revision(), cp})
			mu.Unlock()
		}
	}()
	return func() []write {
		mu.Lock()
		defer mu.Unlock()
		return append([]write(nil), seen...)
	}
}

// holder plays another tailer that took the checkpoint over: it rewrites
// it (its heartbeat) every interval until stopped, and returns its last
// write.
func (r *rig) holder(owner string) (writes func() int, stop func() *checkpoint.Checkpoint) {
	ctx, cancel := context.WithCancel(r.ctx)
	var mu sync.Mutex
	n := 0
	var last *checkpoint.Checkpoint
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(rigInterval / 2)
		defer tick.Stop()
		for {
			cp, rev, err := r.store.Load(ctx)
			if err == nil && cp != nil {
				cp.Owner, cp.UpdatedAt, cp.Released = owner, time.Now().UTC(), false
				if _, err := r.store.Save(ctx, cp, rev); err == nil {
					mu.Lock()
					n, last = n+1, cp
					mu.Unlock()
				} else if !errors.Is(err, checkpoint.ErrMoved) && ctx.Err() == nil {
					r.t.Errorf("holder %s: %v", owner, err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	writes = func() int { mu.Lock(); defer mu.Unlock(); return n }
	stop = func() *checkpoint.Checkpoint {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return last
	}
	return writes, stop
}

// TestTailerStandsByAndTakesOver: a tailer whose checkpoint another tailer
// takes stops publishing and stands by, writing nothing and naming the
// holder; once the holder stops writing for the takeover time it takes
// over and resumes from the stored checkpoint, publishing what changed
// meanwhile.
func TestTailerStandsByAndTakesOver(t *testing.T) {
	r := newRig(t, -1)
	core, logs := observer.New(zap.InfoLevel)
	rec := &recorder{}
	const self, other = "tailer-a:1:0001", "tailer-b:2:0002"
	stop := r.run(r.tailer(self, rec, zap.New(core)))
	r.insert(10, 50)
	eventually(t, 20*time.Second, "the tailer publishing 10 events", func() bool {
		cp, _ := r.checkpoint()
		return cp != nil && cp.Owner == self && cp.Events == 10
	})
	seen := r.watchWrites()

	writes, stopHolder := r.holder(other)
	eventually(t, 10*time.Second, "the tailer standing by for "+other, func() bool { return rec.lastStandby() == other })
	want := "standing by: checkpoint tailer.shop is written by " + other
	eventually(t, 5*time.Second, "the standing-by warning", func() bool {
		return logs.FilterMessageSnippet(want).FilterLevelExact(zap.WarnLevel).Len() > 0
	})
	// While it stands by, changes are not published and the checkpoint is
	// written by the holder only.
	r.insert(5, 50)
	from := writes()
	eventually(t, 10*time.Second, "20 more heartbeats of the holder", func() bool { return writes() >= from+20 })
	firstOther := -1
	for i, w := range seen() {
		if w.cp.Owner == other && firstOther < 0 {
			firstOther = i
		}
		if firstOther >= 0 && w.cp.Owner != other {
			t.Fatalf("revision %d written by %s after the holder took over", w.rev, w.cp.Owner)
		}
	}
	if firstOther < 0 {
		t.Fatal("the holder's writes were not observed")
	}
	if st := r.streamState(); st.Msgs != 10 {
		t.Fatalf("the standby published: the stream holds %d events, want 10", st.Msgs)
	}

	// The holder dies: after the takeover time the standby takes over.
	last := stopHolder()
	eventually(t, 20*time.Second, "the takeover", func() bool {
		cp, _ := r.checkpoint()
		return cp != nil && cp.Owner == self
	})
	// The watch delivers the write after the KV read above may have seen
	// it: wait for the watcher too.
	var mine *checkpoint.Checkpoint
	eventually(t, 10*time.Second, "the takeover write observed by the watch", func() bool {
		for _, w := range seen() {
			if w.cp.Owner == self {
				mine = w.cp
				return true
			}
		}
		return false
	})
	if gap := mine.UpdatedAt.Sub(last.UpdatedAt); gap < rigTakeover {
		t.Fatalf("took over %s after the holder's last write, before the takeover time %s", gap, rigTakeover)
	}
	eventually(t, 20*time.Second, "the changes made meanwhile published", func() bool {
		cp, _ := r.checkpoint()
		return cp.Events == 15 && r.streamState().Msgs == 15
	})
	if rec.lastStandby() != "-" {
		t.Fatalf("metrics still report standby: %v", rec.counts().standby)
	}
	if logs.FilterMessageSnippet("taking over: checkpoint tailer.shop has not changed for").Len() != 1 {
		t.Fatalf("no takeover line in %v", logs.All())
	}
	// A graceful stop releases the checkpoint for the next tailer.
	stop()
	if cp, _ := r.checkpoint(); !cp.Released || cp.Owner != self {
		t.Fatalf("after a graceful stop: %+v", cp)
	}
}

// TestSecondTailerStandsBy: a second tailer started on a checkpoint held
// by a live one stands by at once and does not write; the first stopping
// gracefully (released) lets it take over without waiting.
func TestSecondTailerStandsBy(t *testing.T) {
	r := newRig(t, -1)
	recA, recB := &recorder{}, &recorder{}
	stopA := r.run(r.tailer("tailer-a:1:0001", recA, nil))
	r.insert(3, 50)
	eventually(t, 20*time.Second, "tailer a publishing", func() bool {
		cp, _ := r.checkpoint()
		return cp != nil && cp.Events == 3
	})
	seen := r.watchWrites()
	r.run(r.tailer("tailer-b:2:0002", recB, nil))
	eventually(t, 10*time.Second, "tailer b standing by", func() bool { return recB.lastStandby() == "tailer-a:1:0001" })
	// a keeps writing for more than the takeover time; b never does.
	eventually(t, 10*time.Second, "tailer a writing past the takeover time", func() bool {
		w := seen()
		return len(w) > 0 && w[len(w)-1].cp.UpdatedAt.Sub(w[0].cp.UpdatedAt) > 2*rigTakeover
	})
	for _, w := range seen() {
		if w.cp.Owner != "tailer-a:1:0001" {
			t.Fatalf("revision %d written by %s while a holds the checkpoint", w.rev, w.cp.Owner)
		}
	}
	released := time.Now()
	stopA()
	eventually(t, 10*time.Second, "tailer b taking over the released checkpoint", func() bool {
		cp, _ := r.checkpoint()
		return cp.Owner == "tailer-b:2:0002"
	})
	if took := time.Since(released); took >= 5*time.Second {
		t.Fatalf("took %s to take over a released checkpoint", took)
	}
	r.insert(2, 50)
	eventually(t, 20*time.Second, "tailer b publishing", func() bool {
		cp, _ := r.checkpoint()
		return cp.Events == 5 && r.streamState().Msgs == 5
	})
}

// TestTailerRestartsFromSnapshotHandoff: a checkpoint rewritten by a
// snapshot's hand-off makes the running tailer restart from it (here an
// earlier point: it reads the changes since again, JetStream drops the
// copies), not stand by.
func TestTailerRestartsFromSnapshotHandoff(t *testing.T) {
	r := newRig(t, -1)
	rec := &recorder{}
	const self = "tailer-a:1:0001"
	r.run(r.tailer(self, rec, nil))
	var before *checkpoint.Checkpoint
	eventually(t, 20*time.Second, "a first checkpoint", func() bool {
		before, _ = r.checkpoint()
		return before != nil
	})
	r.insert(10, 50)
	eventually(t, 20*time.Second, "10 events published", func() bool {
		cp, _ := r.checkpoint()
		return cp.Events == 10
	})
	if n := rec.counts().read; n != 10 {
		t.Fatalf("read %d events, want 10", n)
	}
	for {
		_, rev := r.checkpoint()
		hand := &checkpoint.Checkpoint{Token: json.RawMessage(before.Token), ClusterTime: before.ClusterTime,
			UpdatedAt: time.Now().UTC(), Owner: checkpoint.HandoffOwner(), Handoff: true}
		_, err := r.store.Save(r.ctx, hand, rev)
		if err == nil {
			break
		}
		if !errors.Is(err, checkpoint.ErrMoved) {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "the tailer re-reading from the hand-off", func() bool { return rec.counts().read == 20 })
	eventually(t, 10*time.Second, "the tailer owning the checkpoint again", func() bool {
		cp, _ := r.checkpoint()
		return cp.Owner == self && !cp.Handoff
	})
	if st := r.streamState(); st.Msgs != 10 {
		t.Fatalf("stream holds %d events, want 10 (copies dropped by dedup)", st.Msgs)
	}
	if s := rec.counts().standby; len(s) != 0 {
		t.Fatalf("the tailer stood by for a hand-off: %v", s)
	}
}
