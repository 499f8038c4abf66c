package tailer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/amanat/cdc/pkg/checkpoint"
)

// fakeClock is a virtual clock: After advances it by d and fires at once,
// so loops that wait run at full speed and their timing is exact.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// memStore is a revision-checked CheckpointStore in memory. onLoad runs
// before each Load (n counts loads from 1) to play the other writers.
type memStore struct {
	mu      sync.Mutex
	cp      *checkpoint.Checkpoint
	rev     uint64
	next    uint64
	writes  []checkpoint.Checkpoint // every successful Save
	loads   int
	onLoad  func(s *memStore, n int)
	loadErr func(n int) error
	// onSave runs before each Save (outside the lock); a non-nil error
	// fails it.
	onSave func() error
}

func (s *memStore) Load(context.Context) (*checkpoint.Checkpoint, uint64, error) {
	s.mu.Lock()
	s.loads++
	n := s.loads
	hook := s.onLoad
	s.mu.Unlock()
	if hook != nil {
		hook(s, n)
	}
	if s.loadErr != nil {
		if err := s.loadErr(n); err != nil {
			return nil, 0, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cp == nil {
		return nil, 0, nil
	}
	c := *s.cp
	return &c, s.rev, nil
}

func (s *memStore) Save(_ context.Context, cp *checkpoint.Checkpoint, rev uint64) (uint64, error) {
	if s.onSave != nil {
		if err := s.onSave(); err != nil {
			return 0, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev != s.rev || (rev == 0 && s.cp != nil) {
		var cur *checkpoint.Checkpoint
		if s.cp != nil {
			c := *s.cp
			cur = &c
		}
		return 0, &checkpoint.MovedError{Key: "tailer.db", Expected: rev, Revision: s.rev, Current: cur, Cause: errors.New("wrong last sequence")}
	}
	return s.put(*cp), nil
}

// put stores cp as the next revision (another writer, or Save).
func (s *memStore) put(cp checkpoint.Checkpoint) uint64 {
	s.next++
	s.rev = s.next
	s.cp = &cp
	s.writes = append(s.writes, cp)
	return s.rev
}

func (s *memStore) delete() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.cp, s.rev = nil, 0
}

func (s *memStore) writesBy(owner string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, w := range s.writes {
		if w.Owner == owner {
			n++
		}
	}
	return n
}

// standbyRecorder records Standby reports.
type standbyRecorder struct {
	noMetrics
	mu      sync.Mutex
	standby []string // holder per Standby(true); "-" per Standby(false)
	alive   int
}

func (r *standbyRecorder) Standby(on bool, holder string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.standby = append(r.standby, holder)
	} else {
		r.standby = append(r.standby, "-")
	}
}

func (r *standbyRecorder) Alive() { r.mu.Lock(); r.alive++; r.mu.Unlock() }

const (
	testInterval = 100 * time.Millisecond
	testTakeover = time.Second
)

func newFenceTailer(t *testing.T, store CheckpointStore) (*Tailer, *fakeClock, *standbyRecorder, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	rec := &standbyRecorder{}
	tl := New(nil, nil, store, Config{Database: "db", CheckpointInterval: testInterval, Owner: "self:1:aaaa",
		StandbyTakeover: testTakeover}, zap.New(core), rec)
	clk := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	tl.clock = clk
	return tl, clk, rec, logs
}

func held(owner string) checkpoint.Checkpoint {
	return checkpoint.Checkpoint{V: checkpoint.Version, Token: []byte(`{"_data":"82"}`), Owner: owner}
}

// A standby takes over exactly once the checkpoint has not moved for the
// takeover time after the holder's last write, never before, and writes
// nothing while it waits.
func TestStandByTakesOverAfterQuiet(t *testing.T) {
	store := &memStore{}
	rev := store.put(held("other:2:bbbb"))
	tl, clk, rec, logs := newFenceTailer(t, store)
	var lastWrite time.Time
	store.onLoad = func(s *memStore, n int) {
		if n <= 12 { // the holder keeps writing for 12 polls, then dies
			s.mu.Lock()
			s.put(held("other:2:bbbb"))
			s.mu.Unlock()
			lastWrite = clk.Now()
		}
	}
	start := clk.Now()
	if err := tl.standBy(context.Background(), &heldError{holder: "other:2:bbbb", rev: rev}); err != nil {
		t.Fatal(err)
	}
	quiet := clk.Now().Sub(lastWrite)
	if quiet < testTakeover || quiet > testTakeover+testInterval {
		t.Fatalf("took over %s after the holder's last write, want between %s and %s", quiet, testTakeover, testTakeover+testInterval)
	}
	if got := clk.Now().Sub(start); got < 12*testInterval+testTakeover {
		t.Fatalf("took over after %s while the holder wrote for %s", got, 12*testInterval)
	}
	if n := store.writesBy("self:1:aaaa"); n != 0 {
		t.Fatalf("the standby wrote %d times", n)
	}
	if tl.lease.rev != store.rev {
		t.Fatalf("lease revision %d, want the quiet revision %d", tl.lease.rev, store.rev)
	}
	if len(rec.standby) != 1 || rec.standby[0] != "other:2:bbbb" || rec.alive == 0 {
		t.Fatalf("metrics: standby %v, alive %d", rec.standby, rec.alive)
	}
	if logs.FilterMessage("standing by: checkpoint tailer.db is written by other:2:bbbb (revision 1)").FilterLevelExact(zap.WarnLevel).Len() != 1 {
		t.Fatalf("no standing-by warning: %v", logs.All())
	}
	if logs.FilterMessageSnippet("taking over: checkpoint tailer.db has not changed for").Len() != 1 {
		t.Fatalf("no takeover line: %v", logs.All())
	}

	// The claim that follows is checked against that revision and wins.
	cp, err := tl.acquire(context.Background())
	if err != nil || cp == nil {
		t.Fatalf("acquire after takeover: %v, %v", cp, err)
	}
	if store.cp.Owner != "self:1:aaaa" || rec.standby[len(rec.standby)-1] != "-" {
		t.Fatalf("after the claim: owner %q, metrics %v", store.cp.Owner, rec.standby)
	}
}

// A holder that writes once more between the takeover decision and the
// claim keeps the checkpoint: the claim fails with a checkpoint.MovedError.
func TestTakeoverClaimLosesToALateHolder(t *testing.T) {
	store := &memStore{}
	rev := store.put(held("other:2:bbbb"))
	tl, _, _, _ := newFenceTailer(t, store)
	if err := tl.standBy(context.Background(), &heldError{holder: "other:2:bbbb", rev: rev}); err != nil {
		t.Fatal(err)
	}
	store.onLoad = func(s *memStore, n int) {
		s.mu.Lock()
		s.put(held("other:2:bbbb"))
		s.mu.Unlock()
	}
	_, err := tl.acquire(context.Background())
	var h *heldError
	if !errors.As(err, &h) || h.holder != "other:2:bbbb" {
		t.Fatalf("claim after a late write: %v", err)
	}
	if store.writesBy("self:1:aaaa") != 0 {
		t.Fatal("the standby wrote over a live holder")
	}
}

// Released, handed-off and deleted checkpoints are taken over at the next
// poll; time in which the checkpoint is unreadable does not count as quiet.
func TestStandByTakeoverCases(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change runs at the first poll.
		change func(s *memStore)
		after  time.Duration
	}{
		{"released", func(s *memStore) { c := held("other:2:bbbb"); c.Released = true; s.put(c) }, testInterval},
		{"snapshot hand-off", func(s *memStore) { c := held(checkpoint.HandoffOwner()); c.Handoff = true; s.put(c) }, testInterval},
		{"deleted", func(s *memStore) { s.cp, s.rev = nil, 0 }, testInterval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memStore{}
			rev := store.put(held("other:2:bbbb"))
			store.onLoad = func(s *memStore, n int) {
				if n == 1 {
					s.mu.Lock()
					tc.change(s)
					s.mu.Unlock()
				}
			}
			tl, clk, _, _ := newFenceTailer(t, store)
			start := clk.Now()
			if err := tl.standBy(context.Background(), &heldError{holder: "other:2:bbbb", rev: rev}); err != nil {
				t.Fatal(err)
			}
			if got := clk.Now().Sub(start); got != tc.after {
				t.Fatalf("took over after %s, want %s", got, tc.after)
			}
		})
	}
	t.Run("unreadable is not quiet", func(t *testing.T) {
		store := &memStore{}
		rev := store.put(held("other:2:bbbb"))
		store.loadErr = func(n int) error {
			if n <= 30 { // 3 s of NATS outage, longer than the takeover
				return errors.New("nats: connection closed")
			}
			return nil
		}
		tl, clk, _, logs := newFenceTailer(t, store)
		start := clk.Now()
		if err := tl.standBy(context.Background(), &heldError{holder: "other:2:bbbb", rev: rev}); err != nil {
			t.Fatal(err)
		}
		if got := clk.Now().Sub(start); got < 30*testInterval+testTakeover {
			t.Fatalf("took over %s after the start, %s after reads resumed; want a full takeover time after", got, got-30*testInterval)
		}
		if logs.FilterMessageSnippet("unreadable").Len() != 1 {
			t.Fatalf("the outage is logged %d times, want once", logs.FilterMessageSnippet("unreadable").Len())
		}
	})
	t.Run("new holder is named", func(t *testing.T) {
		store := &memStore{}
		rev := store.put(held("other:2:bbbb"))
		store.onLoad = func(s *memStore, n int) {
			if n == 3 {
				s.mu.Lock()
				s.put(held("third:3:cccc"))
				s.mu.Unlock()
			}
		}
		tl, _, rec, logs := newFenceTailer(t, store)
		if err := tl.standBy(context.Background(), &heldError{holder: "other:2:bbbb", rev: rev}); err != nil {
			t.Fatal(err)
		}
		if len(rec.standby) != 2 || rec.standby[1] != "third:3:cccc" ||
			logs.FilterMessage("standing by: checkpoint tailer.db is written by third:3:cccc (revision 2)").Len() != 1 {
			t.Fatalf("metrics %v, logs %v", rec.standby, logs.All())
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		store := &memStore{}
		rev := store.put(held("other:2:bbbb"))
		ctx, cancel := context.WithCancel(context.Background())
		store.onLoad = func(s *memStore, n int) {
			s.mu.Lock()
			s.put(held("other:2:bbbb"))
			s.mu.Unlock()
			if n == 5 {
				cancel()
			}
		}
		tl, _, _, _ := newFenceTailer(t, store)
		if err := tl.standBy(ctx, &heldError{holder: "other:2:bbbb", rev: rev}); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled standby: %v", err)
		}
	})
}

// A session claims without waiting only what is claimable: its own,
// released, a snapshot's hand-off, a v1 checkpoint, or the revision it
// decided to take over. Anything else another tailer holds.
func TestAcquire(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cp    func() checkpoint.Checkpoint
		lease bool // the lease is at the stored revision
		held  bool
	}{
		{"own", func() checkpoint.Checkpoint { return held("self:1:aaaa") }, false, false},
		{"released", func() checkpoint.Checkpoint { c := held("other:2:bbbb"); c.Released = true; return c }, false, false},
		{"hand-off", func() checkpoint.Checkpoint { c := held(checkpoint.HandoffOwner()); c.Handoff = true; return c }, false, false},
		{"v1", func() checkpoint.Checkpoint { c := held(""); c.V = 1; return c }, false, false},
		{"taken over", func() checkpoint.Checkpoint { return held("other:2:bbbb") }, true, false},
		{"held by another", func() checkpoint.Checkpoint { return held("other:2:bbbb") }, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memStore{}
			rev := store.put(tc.cp())
			tl, _, _, _ := newFenceTailer(t, store)
			if tc.lease {
				tl.lease.rev = rev
			}
			cp, err := tl.acquire(context.Background())
			var h *heldError
			switch {
			case tc.held:
				if !errors.As(err, &h) || h.rev != rev || h.holder != "other:2:bbbb" || store.writesBy("self:1:aaaa") != 0 {
					t.Fatalf("acquire: %v, %v; writes %d", cp, err, store.writesBy("self:1:aaaa"))
				}
			default:
				if err != nil || cp == nil {
					t.Fatalf("acquire: %v, %v", cp, err)
				}
				if store.cp.Owner != "self:1:aaaa" || store.cp.Handoff || store.cp.Released || tl.lease.rev != store.rev {
					t.Fatalf("claimed as %+v, lease %d of %d", store.cp, tl.lease.rev, store.rev)
				}
			}
		})
	}
}

// Between sessions the holder keeps writing (heartbeats), so a standby
// does not take over a tailer that only retries; a heartbeat that finds
// the checkpoint moved ends the pause with the checkpoint.MovedError.
func TestPauseHeartbeats(t *testing.T) {
	store := &memStore{}
	store.put(held("self:1:aaaa"))
	tl, _, _, _ := newFenceTailer(t, store)
	if _, err := tl.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := store.writesBy("self:1:aaaa")
	if err := tl.pause(context.Background(), 10*testInterval); err != nil {
		t.Fatal(err)
	}
	if got := store.writesBy("self:1:aaaa") - before; got != 10 {
		t.Fatalf("%d heartbeats in 10 intervals, want 10", got)
	}
	store.mu.Lock()
	store.put(held("other:2:bbbb"))
	store.mu.Unlock()
	err := tl.pause(context.Background(), 10*testInterval)
	h, fenced := tl.fenced(err)
	if !errors.Is(err, checkpoint.ErrMoved) || !fenced || h == nil || h.holder != "other:2:bbbb" {
		t.Fatalf("pause after a takeover: %v (held %v)", err, h)
	}
}

// write adopts a revision moved by its own lost reply and re-creates a
// checkpoint deleted under it; fenced tells a hand-off (restart) from
// another tailer (stand by).
func TestWriteAndFenced(t *testing.T) {
	store := &memStore{}
	store.put(held("self:1:aaaa"))
	tl, _, _, _ := newFenceTailer(t, store)
	if _, err := tl.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Our own write whose reply was lost moved the revision.
	store.mu.Lock()
	store.put(held("self:1:aaaa"))
	store.mu.Unlock()
	if err := tl.write(context.Background(), &checkpoint.Checkpoint{Token: []byte(`{"_data":"82"}`)}); err != nil {
		t.Fatalf("write after a lost reply: %v", err)
	}
	store.delete()
	if err := tl.write(context.Background(), &checkpoint.Checkpoint{Token: []byte(`{"_data":"83"}`)}); err != nil {
		t.Fatalf("write after a delete: %v", err)
	}
	if store.cp == nil || string(store.cp.Token) != `{"_data":"83"}` {
		t.Fatalf("not re-created: %+v", store.cp)
	}
	// A snapshot hand-off: restart at once, no standby.
	c := held(checkpoint.HandoffOwner())
	c.Handoff = true
	store.mu.Lock()
	store.put(c)
	store.mu.Unlock()
	err := tl.write(context.Background(), &checkpoint.Checkpoint{Token: []byte(`{"_data":"84"}`)})
	if h, fenced := tl.fenced(err); !fenced || h != nil {
		t.Fatalf("hand-off: held %v fenced %v (%v)", h, fenced, err)
	}
	if _, fenced := tl.fenced(errors.New("nats: timeout")); fenced {
		t.Fatal("a timeout is not the fence")
	}
	if !strings.HasPrefix(checkpoint.HandoffOwner(), "snapshot:") {
		t.Fatalf("HandoffOwner %q", checkpoint.HandoffOwner())
	}
}
