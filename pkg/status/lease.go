package status

import (
	"time"

	"github.com/amanat/cdc/pkg/checkpoint"
)

// leaseStatus is the lease section of checkpoint cp at now; takeover is
// tailer.standby_takeover (0: the unrenewed state is not judged).
func leaseStatus(cp *checkpoint.Checkpoint, now time.Time, takeover time.Duration) *TailerLease {
	l := &TailerLease{Holder: cp.Owner, State: LeaseHeld, Takeovers: cp.Takeovers}
	switch {
	case cp.Handoff:
		l.State = LeaseHandoff
	case cp.Released:
		l.State = LeaseReleased
	case takeover > 0 && !cp.UpdatedAt.IsZero() && now.Sub(cp.UpdatedAt) > takeover:
		l.State = LeaseUnrenewed
	}
	if cp.HeldSince != nil {
		at := cp.HeldSince.UTC()
		l.HeldSince = &at
		l.HeldForSeconds = max(now.Sub(at).Seconds(), 0)
	}
	if tk := cp.LastTakeover; tk != nil {
		l.LastTakeover = &TailerTakeover{At: tk.At.UTC(), AgoSeconds: max(now.Sub(tk.At).Seconds(), 0), From: tk.From, To: tk.To,
			Reason: tk.Reason, QuietSeconds: float64(tk.QuietMillis) / 1e3}
	}
	return l
}

// leaseText prints the lease lines of the tailer section.
func leaseText(p printer, l *TailerLease) {
	if l == nil {
		return
	}
	holder := l.Holder
	if holder == "" {
		holder = "unknown (a checkpoint from before the fence)"
	}
	switch l.State {
	case LeaseReleased:
		holder += ", released (stopped gracefully; the next tailer takes over at once)"
	case LeaseHandoff:
		holder += ", a snapshot's hand-off (the next tailer to write owns it)"
	case LeaseUnrenewed:
		holder += ", UNRENEWED: not written for longer than tailer.standby_takeover"
	}
	p("  lease holder\t%s", holder)
	if l.HeldSince != nil {
		p("  held since\t%s (%s)", l.HeldSince.Format(time.RFC3339), secs(l.HeldForSeconds))
	}
	if tk := l.LastTakeover; tk != nil {
		how := "it stopped gracefully"
		if tk.Reason == checkpoint.TakeoverExpired {
			how = "it left the checkpoint unchanged for " + time.Duration(tk.QuietSeconds*float64(time.Second)).Round(time.Millisecond).String()
		}
		p("  takeover\tlast %s ago (%s): %s took over from %s (%s: %s); %d takeovers recorded",
			secs(tk.AgoSeconds), tk.At.Format(time.RFC3339), tk.To, tk.From, tk.Reason, how, l.Takeovers)
	} else {
		p("  takeover\tnone recorded")
	}
}
