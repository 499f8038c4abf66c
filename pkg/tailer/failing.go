package tailer

import (
	"errors"
	"time"

	"go.uber.org/zap"
)

// DefaultFailingAfter is Config.FailingAfter's default.
const DefaultFailingAfter = time.Minute

// errRestart ends a session to open the next one at once, without backoff
// (after passing an invalidate covered by a snapshot: the server closed
// the cursor; the next session starts after the invalidate's token).
var errRestart = errors.New("change stream ended by an invalidate: reopening after it")

// failState tracks retried errors, as the sink does (sink.failing): each
// retry is logged at warn level; once errors have lasted FailingAfter
// without a healthy session in between, the tailer reports itself failing
// (Metrics.Failing: unready on /readyz, cdc_tailer_failing) and logs every
// further retry at error level, until a session is healthy again (its
// change stream answered and a checkpoint write succeeded).
type failState struct {
	since time.Time
	over  bool
}

// failed records a retried error; it returns whether the tailer is now
// past FailingAfter.
func (t *Tailer) failed(err error, why cause) bool {
	now := t.clock.Now()
	if t.fail.since.IsZero() {
		t.fail.since = now
	}
	t.fail.over = now.Sub(t.fail.since) >= t.cfg.FailingAfter
	if t.fail.over {
		t.log.Error("the tailer has been failing past tailer.failing_after: nothing after the checkpoint is published until it recovers (nothing is skipped)",
			zap.Duration("for", now.Sub(t.fail.since).Round(time.Second)), zap.String("cause", why.String()), zap.Error(err))
	}
	t.metrics.Failing(t.fail.since, t.fail.over, err.Error())
	return t.fail.over
}

// healthy ends a failing period (a session read from its change stream
// and wrote the checkpoint).
func (t *Tailer) healthy() {
	if t.fail.since.IsZero() {
		return
	}
	t.log.Info("the tailer works again", zap.Duration("failed_for", t.clock.Now().Sub(t.fail.since).Round(time.Second)))
	t.fail = failState{}
	t.metrics.Failing(time.Time{}, false, "")
}
