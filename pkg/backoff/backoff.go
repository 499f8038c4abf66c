// Package backoff computes the waits between retries of one loop: capped
// exponential growth with a random part, so that instances retrying the
// same outage do not knock on the recovered system all at once. It only
// computes; the caller sleeps (on a timer that also watches its ctx).
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is capped exponential backoff: the wait before the n-th retry
// (n from 0) is Initial·2ⁿ capped at Max, of which the fraction Jitter is
// drawn at random: with Jitter 0.5 ("equal jitter") the wait is between
// half and all of that ceiling; with 0 it is the ceiling itself.
type Policy struct {
	// Initial is the first wait (0 or less: never wait).
	Initial time.Duration
	// Max caps every wait; less than Initial is Initial.
	Max time.Duration
	// Jitter is the random fraction of each wait, within [0, 1].
	Jitter float64
}

// Backoff counts the retries of one loop since its last success. It is
// not safe for concurrent use: one loop, one Backoff.
type Backoff struct {
	p       Policy
	attempt int
	// rand is uniform in [0, 1); tests replace it.
	rand func() float64
}

// New returns a Backoff at its first wait.
func New(p Policy) *Backoff {
	p.Max = max(p.Max, p.Initial)
	p.Jitter = min(max(p.Jitter, 0), 1)
	return &Backoff{p: p, rand: rand.Float64}
}

// Next returns the wait before the next retry and counts the retry.
func (b *Backoff) Next() time.Duration {
	ceiling := b.p.ceiling(b.attempt)
	b.attempt++
	random := time.Duration(float64(ceiling) * b.p.Jitter * b.rand())
	return ceiling - time.Duration(float64(ceiling)*b.p.Jitter) + random
}

// Reset makes the next wait Initial again: call it when the loop made
// progress, so the next outage starts from a short wait.
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempt is how many waits Next returned since New or the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// ceiling is the wait before retry n without jitter. The doubling stops at
// Max, so any n is cheap and nothing overflows.
func (p Policy) ceiling(n int) time.Duration {
	if p.Initial <= 0 {
		return 0
	}
	d := p.Initial
	for i := 0; i < n && d < p.Max; i++ {
		if d > p.Max/2 {
			return p.Max
		}
		d *= 2
	}
	return min(d, p.Max)
}
