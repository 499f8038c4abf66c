// Package progress shows a long per-collection scan's progress (snapshot,
// verify): a bar with rate and ETA on a terminal (schollz/progressbar), or
// structured log lines at an interval when the output is not a terminal.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"
)

// Display shows a scan's progress. Begin and End bracket each
// collection's scan; Advance reports documents done. Calls come from one
// goroutine.
type Display interface {
	// Begin starts a collection of about total documents, done of which
	// an earlier run already published.
	Begin(coll string, total, done int64)
	// Advance counts n more documents done.
	Advance(coll string, n int64)
	// End finishes the collection.
	End(coll string)
}

// Nop shows nothing.
type Nop struct{}

func (Nop) Begin(string, int64, int64) {}
func (Nop) Advance(string, int64)      {}
func (Nop) End(string)                 {}

// Bar draws one progress bar per collection (done/total, rate in
// documents per second, ETA) on a terminal. A resumed collection's bar
// counts what is left; its description says how much an earlier run did
// (so the rate is this run's).
type Bar struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

// NewBar draws on w (a terminal: the bar redraws in place).
func NewBar(w io.Writer) *Bar { return &Bar{w: w} }

func (d *Bar) Begin(coll string, total, done int64) {
	desc := coll
	if done > 0 {
		desc = fmt.Sprintf("%s (+%d earlier)", coll, done)
	}
	d.bar = progressbar.NewOptions64(max(total-done, 1),
		progressbar.OptionSetWriter(d.w),
		progressbar.OptionSetDescription(fmt.Sprintf("%-28s", desc)),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("docs"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(d.w) }),
	)
}

func (d *Bar) Advance(_ string, n int64) {
	if d.bar == nil {
		return
	}
	// Never complete before End: documents inserted during the scan
	// may push the count past the total counted at the start.
	if cur := int64(d.bar.State().CurrentNum) + n; cur >= d.bar.GetMax64() {
		d.bar.ChangeMax64(cur + 1)
	}
	_ = d.bar.Add64(n)
}

func (d *Bar) End(string) {
	if d.bar != nil {
		d.bar.ChangeMax64(max(int64(d.bar.State().CurrentNum), 1))
		_ = d.bar.Finish()
		d.bar = nil
	}
}

// Log writes structured progress lines (collection, done, total,
// rate, ETA) at most every Every, and one at the end of each collection;
// for logs that are not a terminal.
type Log struct {
	log   *zap.Logger
	every time.Duration
	what  string // "snapshot", "verify": the log messages' subject

	mu        sync.Mutex
	coll      string
	total     int64
	done      int64
	startDone int64
	start     time.Time
	last      time.Time
}

// NewLog logs to log every interval (default 10s); what names the scan
// in the messages ("snapshot progress").
func NewLog(log *zap.Logger, every time.Duration, what string) *Log {
	if every <= 0 {
		every = 10 * time.Second
	}
	return &Log{log: log, every: every, what: what}
}

func (d *Log) Begin(coll string, total, done int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.coll, d.total, d.done, d.startDone, d.start, d.last = coll, total, done, done, now, now
	d.log.Info(d.what+" collection started", zap.String("collection", coll), zap.Int64("total", total), zap.Int64("done", done))
}

func (d *Log) Advance(_ string, n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done += n
	if now := time.Now(); now.Sub(d.last) >= d.every {
		d.last = now
		d.emit(d.what + " progress")
	}
}

func (d *Log) End(string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total = max(d.total, d.done)
	d.emit(d.what + " collection done")
}

func (d *Log) emit(msg string) {
	el := time.Since(d.start)
	rate := 0.0
	if el > 0 {
		rate = float64(d.done-d.startDone) / el.Seconds()
	}
	fields := []zap.Field{
		zap.String("collection", d.coll), zap.Int64("done", d.done), zap.Int64("total", d.total),
		zap.Float64("docs_per_second", float64(int64(rate*10))/10), zap.Duration("elapsed", el.Round(time.Millisecond)),
	}
	if rate > 0 && d.total > d.done {
		fields = append(fields, zap.Duration("eta", time.Duration(float64(d.total-d.done)/rate*float64(time.Second)).Round(time.Second)))
	}
	d.log.Info(msg, fields...)
}
