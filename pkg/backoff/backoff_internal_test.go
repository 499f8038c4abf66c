package backoff

import (
	"math"
	"testing"
	"time"
)

const ms = time.Millisecond

// waits returns the first n waits of p with the random part fixed at r.
func waits(p Policy, r float64, n int) []time.Duration {
	b := New(p)
	b.rand = func() float64 { return r }
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = b.Next()
	}
	return out
}

func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGrowthAndCap: without jitter the waits double from Initial and stop
// at Max.
func TestGrowthAndCap(t *testing.T) {
	cases := []struct {
		name string
		p    Policy
		want []time.Duration
	}{
		{"bus: 100ms to 3s", Policy{Initial: 100 * ms, Max: 3 * time.Second},
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3 * time.Second, 3 * time.Second}},
		{"a cap that is a power of two", Policy{Initial: ms, Max: 8 * ms},
			[]time.Duration{ms, 2 * ms, 4 * ms, 8 * ms, 8 * ms}},
		{"Max below Initial is Initial", Policy{Initial: 50 * ms, Max: 10 * ms},
			[]time.Duration{50 * ms, 50 * ms, 50 * ms}},
		{"no Initial: no wait", Policy{Max: time.Second},
			[]time.Duration{0, 0, 0}},
		{"negative Initial: no wait", Policy{Initial: -ms, Max: time.Second},
			[]time.Duration{0, 0}},
		{"Max near the largest duration does not overflow", Policy{Initial: time.Duration(math.MaxInt64/4 + 1), Max: math.MaxInt64},
			[]time.Duration{math.MaxInt64/4 + 1, math.MaxInt64/2 + 1, math.MaxInt64, math.MaxInt64}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := waits(tc.p, 0.7, len(tc.want)); !equal(got, tc.want) {
				t.Fatalf("waits %v, want %v", got, tc.want)
			}
		})
	}
}

// TestJitterBounds: the random part moves each wait within
// [ceiling·(1-Jitter), ceiling], never past Max.
func TestJitterBounds(t *testing.T) {
	p := Policy{Initial: 100 * ms, Max: 10 * time.Second, Jitter: 0.5}
	cases := []struct {
		name string
		r    float64
		want []time.Duration
	}{
		{"lowest draw: half the ceiling", 0, []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5 * time.Second, 5 * time.Second}},
		{"middle draw", 0.5, []time.Duration{75 * ms, 150 * ms, 300 * ms, 600 * ms, 1200 * ms, 2400 * ms, 4800 * ms, 7500 * ms, 7500 * ms}},
		{"highest draw: under the ceiling", math.Nextafter(1, 0), []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 10 * time.Second, 10 * time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := waits(p, tc.r, len(tc.want))
			for i := range got {
				// The highest draw truncates a nanosecond or so below the ceiling.
				if d := got[i] - tc.want[i]; d > 0 || d < -2 {
					t.Fatalf("wait %d = %v, want %v (all: %v)", i, got[i], tc.want[i], got)
				}
			}
		})
	}
	t.Run("random draws stay within the bounds", func(t *testing.T) {
		for _, jitter := range []float64{0, 0.25, 0.5, 1} {
			q := p
			q.Jitter = jitter
			b := New(q)
			for i := range 2000 {
				if i%20 == 0 {
					b.Reset()
				}
				ceiling := q.ceiling(b.Attempt())
				low := ceiling - time.Duration(float64(ceiling)*jitter)
				if w := b.Next(); w < low || w > ceiling || w > q.Max {
					t.Fatalf("jitter %v, attempt %d: wait %v outside [%v, %v]", jitter, b.Attempt()-1, w, low, ceiling)
				}
			}
		}
	})
	t.Run("jitter outside [0, 1] is clamped", func(t *testing.T) {
		if got := waits(Policy{Initial: 100 * ms, Max: time.Second, Jitter: 3}, 0, 2); !equal(got, []time.Duration{0, 0}) {
			t.Fatalf("jitter 3, lowest draw: %v, want [0 0] (jitter 1)", got)
		}
		if got := waits(Policy{Initial: 100 * ms, Max: time.Second, Jitter: -1}, 0, 2); !equal(got, []time.Duration{100 * ms, 200 * ms}) {
			t.Fatalf("jitter -1: %v, want [100ms 200ms] (jitter 0)", got)
		}
	})
}

// TestReset: Reset starts again from Initial; Attempt counts the waits
// since.
func TestReset(t *testing.T) {
	b := New(Policy{Initial: 10 * ms, Max: time.Second})
	for want := range 4 {
		if b.Attempt() != want {
			t.Fatalf("Attempt() = %d before wait %d", b.Attempt(), want)
		}
		b.Next()
	}
	if w := b.Next(); w != 160*ms {
		t.Fatalf("fifth wait %v, want 160ms", w)
	}
	b.Reset()
	if b.Attempt() != 0 {
		t.Fatalf("Attempt() = %d after Reset, want 0", b.Attempt())
	}
	if w := b.Next(); w != 10*ms {
		t.Fatalf("first wait after Reset %v, want 10ms", w)
	}
	if w := b.Next(); w != 20*ms {
		t.Fatalf("second wait after Reset %v, want 20ms", w)
	}
}

// TestManyAttempts: a loop that has failed for days still gets Max, at
// no cost.
func TestManyAttempts(t *testing.T) {
	p := Policy{Initial: 200 * ms, Max: 10 * time.Second}
	if got := p.ceiling(math.MaxInt); got != 10*time.Second {
		t.Fatalf("ceiling(MaxInt) = %v, want 10s", got)
	}
}
