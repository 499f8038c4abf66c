package tailer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap/zaptest/observer"

	"github.com/amanat/cdc/pkg/checkpoint"
)

// leaseRecorder records the lease reports on top of standbyRecorder.
type leaseRecorder struct {
	standbyRecorder
	mu        sync.Mutex
	lease     []string // "held" or "-" per Lease report
	takeovers []checkpoint.Takeover
	lapses    int
}

func (r *leaseRecorder) Lease(held bool, _ time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if held {
		r.lease = append(r.lease, "held")
	} else {
		r.lease = append(r.lease, "-")
	}
}
func (r *leaseRecorder) TookOver(tk checkpoint.Takeover) {
	r.mu.Lock()
	r.takeovers = append(r.takeovers, tk)
	r.mu.Unlock()
}
func (r *leaseRecorder) LeaseLapsed() { r.mu.Lock(); r.lapses++; r.mu.Unlock() }

func newLeaseTailer(t *testing.T, store CheckpointStore) (*Tailer, *fakeClock, *leaseRecorder, *observer.ObservedLogs) {
	t.Helper()
	tl, clk, _, logs := newFenceTailer(t, store)
	rec := &leaseRecorder{}
	tl.metrics = rec
	return tl, clk, rec, logs
}

// heldSession is a session that holds the checkpoint (claimed at the
// clock's start) with a durable position.
func heldSession(t *testing.T, tl *Tailer) *state {
	t.Helper()
	if _, err := tl.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok, err := bson.Marshal(bson.D{{Key: "_data", Value: "82"}})
	if err != nil {
		t.Fatal(err)
	}
	return &state{durable: &point{tok: tok}}
}

// The lease runs leaseTTL from the start of the write, not from its ack:
// a write acknowledged 3 s after it started leaves 3 s less lease.
func TestLeaseRunsFromTheWriteStart(t *testing.T) {
	store := &memStore{}
	store.put(held("self:1:aaaa"))
	tl, clk, _, _ := newLeaseTailer(t, store)
	if got, want := tl.leaseTTL(), testTakeover-testTakeover/5; got != want {
		t.Fatalf("leaseTTL %s, want %s", got, want)
	}
	start := clk.Now()
	store.onSave = func() error { clk.After(300 * time.Millisecond); return nil }
	if _, err := tl.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := start.Add(tl.leaseTTL()); !tl.lease.until.Equal(want) {
		t.Fatalf("lease until %s, want the write's start + %s = %s", tl.lease.until, tl.leaseTTL(), want)
	}
	if !store.cp.UpdatedAt.Equal(start) {
		t.Fatalf("checkpoint updated_at %s, want the write's start %s", store.cp.UpdatedAt, start)
	}
}

// Before a publish: within the lease nothing is written; past it, a
// revision-checked renewal must succeed first. A renewal that finds the
// checkpoint moved is the fence (stand by); one that cannot reach the
// store is an error (retry); neither lets the publish go out.
func TestCheckLease(t *testing.T) {
	for _, tc := range []struct {
		name string
		// elapsed since the claim when the check runs.
		elapsed time.Duration
		// before runs before the check (another writer, a store outage).
		before    func(s *memStore)
		writes    int // by this tailer, in the check
		lapses    int
		wantErr   func(err error) bool
		wantValid bool
	}{
		{name: "within the lease", elapsed: testTakeover*4/5 - time.Millisecond, writes: 0, lapses: 0, wantValid: true},
		{name: "past the lease, renewed", elapsed: testTakeover * 4 / 5, writes: 1, lapses: 1, wantValid: true},
		{name: "past the lease, taken over", elapsed: 3 * testTakeover,
			before: func(s *memStore) { s.mu.Lock(); s.put(held("other:2:bbbb")); s.mu.Unlock() }, lapses: 1,
			wantErr: func(err error) bool {
				var m *checkpoint.MovedError
				return errors.As(err, &m) && m.Holder() == "other:2:bbbb"
			}},
		{name: "past the lease, store unreachable", elapsed: 3 * testTakeover,
			before: func(s *memStore) { s.onSave = func() error { return errors.New("nats: timeout") } }, lapses: 1,
			wantErr: func(err error) bool { return err != nil && !errors.Is(err, checkpoint.ErrMoved) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memStore{}
			store.put(held("self:1:aaaa"))
			tl, clk, rec, _ := newLeaseTailer(t, store)
			st := heldSession(t, tl)
			before := store.writesBy("self:1:aaaa")
			clk.After(tc.elapsed)
			if tc.before != nil {
				tc.before(store)
			}
			err := tl.checkLease(context.Background(), st)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("check: %v", err)
			case tc.wantErr != nil && !tc.wantErr(err):
				t.Fatalf("check: unexpected error %v", err)
			}
			if got := store.writesBy("self:1:aaaa") - before; got != tc.writes {
				t.Fatalf("%d writes in the check, want %d", got, tc.writes)
			}
			if rec.lapses != tc.lapses || tl.lease.valid != tc.wantValid {
				t.Fatalf("lapses %d (want %d), valid %v (want %v), reports %v", rec.lapses, tc.lapses, tl.lease.valid, tc.wantValid, rec.lease)
			}
			if tc.wantValid && !clk.Now().Before(tl.lease.until) {
				t.Fatalf("after the check the lease ends at %s, now is %s", tl.lease.until, clk.Now())
			}
		})
	}
	t.Run("no checkpoint yet", func(t *testing.T) {
		store := &memStore{}
		tl, _, rec, _ := newLeaseTailer(t, store)
		if err := tl.checkLease(context.Background(), &state{}); err != nil || len(store.writes) != 0 {
			t.Fatalf("without a durable position: %v, %d writes", err, len(store.writes))
		}
		// The first durable position: the checkpoint is created before the
		// next publish, and that is not a lapse.
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: "82"}})
		if err := tl.checkLease(context.Background(), &state{durable: &point{tok: tok}}); err != nil {
			t.Fatal(err)
		}
		if len(store.writes) != 1 || rec.lapses != 0 || !tl.lease.valid || store.cp.HeldSince == nil {
			t.Fatalf("first checkpoint: %d writes, %d lapses, valid %v, %+v", len(store.writes), rec.lapses, tl.lease.valid, store.cp)
		}
	})
}

// The hooks run around the lease check: BeforePublish before it (a
// freeze there is caught by the check), AfterLeaseCheck after it.
func TestMayPublishHooks(t *testing.T) {
	store := &memStore{}
	store.put(held("self:1:aaaa"))
	tl, clk, _, _ := newLeaseTailer(t, store)
	st := heldSession(t, tl)
	var order []string
	tl.cfg.Hooks = Hooks{
		BeforePublish:   func(context.Context) { order = append(order, "before"); clk.After(2 * testTakeover) },
		AfterLeaseCheck: func(context.Context) { order = append(order, "after") },
	}
	store.onLoad = nil
	store.mu.Lock()
	store.put(held("other:2:bbbb")) // taken over during the freeze
	store.mu.Unlock()
	err := tl.mayPublish(context.Background(), st)
	if !errors.Is(err, checkpoint.ErrMoved) || fmt.Sprint(order) != "[before]" {
		t.Fatalf("after a freeze past the lease: %v, hooks %v", err, order)
	}
}

// Holder deadline < standby takeover, whatever the write latency and the
// poll phase: the holder's lease (from the start of its last successful
// write) ends at least the margin before the standby's claim.
func TestHolderDeadlineBeforeTakeover(t *testing.T) {
	for _, latency := range []time.Duration{0, testInterval / 3, testInterval, 3 * testInterval} {
		for _, writes := range []int{1, 4, 7} {
			t.Run(fmt.Sprintf("latency %s, %d writes", latency, writes), func(t *testing.T) {
				store := &memStore{}
				rev := store.put(held("other:2:bbbb"))
				tl, clk, _, _ := newLeaseTailer(t, store)
				var lastStart time.Time
				store.onLoad = func(s *memStore, n int) {
					if n <= writes {
						// The holder's write becomes visible latency after
						// it started.
						s.mu.Lock()
						s.put(held("other:2:bbbb"))
						s.mu.Unlock()
						lastStart = clk.Now().Add(-latency)
					}
				}
				if err := tl.standBy(context.Background(), &heldError{holder: "other:2:bbbb", rev: rev}); err != nil {
					t.Fatal(err)
				}
				claim := clk.Now()
				deadline := lastStart.Add(tl.leaseTTL())
				if margin := claim.Sub(deadline); margin < testTakeover/5 {
					t.Fatalf("holder's lease ends %s before the claim, want at least the margin %s", margin, testTakeover/5)
				}
			})
		}
	}
}

// A claim records the takeover it is: from a released checkpoint, from
// one left unchanged for the takeover time (with how long), none when the
// tailer continues its own tenure, claims a v1 checkpoint or a hand-off
// it did not hold. The history is carried by every later write.
func TestClaimTenure(t *testing.T) {
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := &checkpoint.Takeover{At: since, From: "x:9:0009", To: "other:2:bbbb", Reason: checkpoint.TakeoverExpired}
	for _, tc := range []struct {
		name    string
		cp      func() checkpoint.Checkpoint
		holding bool // this tailer held the checkpoint before
		quiet   time.Duration
		reason  string // "" no takeover
		n       uint64 // Takeovers after the claim
		keep    bool   // HeldSince is the stored one
	}{
		{"expired", func() checkpoint.Checkpoint {
			c := held("other:2:bbbb")
			c.HeldSince, c.LastTakeover, c.Takeovers = &since, prev, 4
			return c
		},
			false, 1500 * time.Millisecond, checkpoint.TakeoverExpired, 5, false},
		{"released", func() checkpoint.Checkpoint { c := held("other:2:bbbb"); c.Released = true; c.Takeovers = 2; return c }, false, 0, checkpoint.TakeoverReleased, 3, false},
		{"v2 of another tailer", func() checkpoint.Checkpoint { c := held("other:2:bbbb"); c.V = 2; return c }, false, time.Second, checkpoint.TakeoverExpired, 1, false},
		{"own, continuing", func() checkpoint.Checkpoint { c := held("self:1:aaaa"); c.HeldSince, c.Takeovers = &since, 4; return c }, true, 0, "", 4, true},
		{"v1", func() checkpoint.Checkpoint { c := held(""); c.V = 1; return c }, false, 0, "", 0, false},
		{"hand-off, not held before", func() checkpoint.Checkpoint { c := held(checkpoint.HandoffOwner()); c.Handoff = true; return c }, false, 0, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memStore{}
			rev := store.put(tc.cp())
			tl, clk, rec, logs := newLeaseTailer(t, store)
			tl.lease.rev, tl.lease.quiet, tl.lease.holding = rev, tc.quiet, tc.holding
			if _, err := tl.acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := store.cp
			if got.Takeovers != tc.n || got.HeldSince == nil {
				t.Fatalf("claimed %+v, want %d takeovers and a held_since", got, tc.n)
			}
			if tc.keep != got.HeldSince.Equal(since) || (!tc.keep && !got.HeldSince.Equal(clk.Now())) {
				t.Fatalf("held_since %s (stored %s, now %s), keep %v", got.HeldSince, since, clk.Now(), tc.keep)
			}
			switch {
			case tc.reason == "":
				if len(rec.takeovers) != 0 || logs.FilterMessageSnippet("took over checkpoint").Len() != 0 {
					t.Fatalf("takeover reported: %+v", rec.takeovers)
				}
			default:
				tk := got.LastTakeover
				if tk == nil || tk.Reason != tc.reason || tk.From != "other:2:bbbb" || tk.To != "self:1:aaaa" || tk.QuietMillis != tc.quiet.Milliseconds() ||
					!tk.At.Equal(*got.HeldSince) || len(rec.takeovers) != 1 || rec.takeovers[0] != *tk {
					t.Fatalf("takeover %+v, reported %+v", tk, rec.takeovers)
				}
				if logs.FilterMessage(fmt.Sprintf("took over checkpoint tailer.db from other:2:bbbb (%s)", tc.reason)).Len() != 1 {
					t.Fatalf("no takeover line: %v", logs.All())
				}
			}
			// A heartbeat carries the history unchanged.
			want := *got
			clk.After(testInterval)
			hb := checkpoint.Checkpoint{Token: want.Token}
			if err := tl.write(context.Background(), &hb); err != nil {
				t.Fatal(err)
			}
			if !store.cp.HeldSince.Equal(*want.HeldSince) || store.cp.Takeovers != want.Takeovers ||
				(want.LastTakeover == nil) != (store.cp.LastTakeover == nil) || (want.LastTakeover != nil && *want.LastTakeover != *store.cp.LastTakeover) {
				t.Fatalf("heartbeat %+v, claim %+v", store.cp, want)
			}
		})
	}
}

// A release ends the lease; a standby begins without one and with no
// tenure.
func TestLeaseEnds(t *testing.T) {
	store := &memStore{}
	store.put(held("self:1:aaaa"))
	tl, _, rec, _ := newLeaseTailer(t, store)
	st := heldSession(t, tl)
	if err := tl.save(context.Background(), st, true); err != nil {
		t.Fatal(err)
	}
	if !tl.lease.until.IsZero() || tl.lease.valid || tl.lease.holding || fmt.Sprint(rec.lease) != "[held -]" {
		t.Fatalf("after a release: until %s valid %v holding %v, reports %v", tl.lease.until, tl.lease.valid, tl.lease.holding, rec.lease)
	}
	store.mu.Lock()
	store.put(held("other:2:bbbb"))
	store.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	store.onLoad = func(*memStore, int) { cancel() }
	_ = tl.standBy(ctx, &heldError{holder: "other:2:bbbb", rev: store.rev})
	if tl.lease.holding || tl.lease.tenure.heldSince != nil {
		t.Fatalf("standing by with tenure %+v, holding %v", tl.lease.tenure, tl.lease.holding)
	}
}
