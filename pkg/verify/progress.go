package verify

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"
)

// Progress shows a run's progress: Begin and End bracket each collection's
// scan, Advance counts documents read. Calls come from one goroutine.
type Progress interface {
	Begin(collection string, total int64)
	Advance(n int64)
	End()
}

// NopProgress shows nothing.
type NopProgress struct{}

func (NopProgress) Begin(string, int64) {}
func (NopProgress) Advance(int64)       {}
func (NopProgress) End()                {}

// BarProgress draws a progress bar per collection on a terminal.
type BarProgress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

// NewBarProgress draws on w, which should be a terminal.
func NewBarProgress(w io.Writer) *BarProgress { return &BarProgress{w: w} }

func (b *BarProgress) Begin(coll string, total int64) {
	b.bar = progressbar.NewOptions64(max(total, 1),
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(fmt.Sprintf("verify %-20s", coll)),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("docs"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(b.w) }),
	)
}

func (b *BarProgress) Advance(n int64) {
	if b.bar == nil {
		return
	}
	if cur := int64(b.bar.State().CurrentNum) + n; cur > b.bar.GetMax64() {
		b.bar.ChangeMax64(cur) // documents inserted during the scan
	}
	_ = b.bar.Add64(n)
}

func (b *BarProgress) End() {
	if b.bar != nil {
		b.bar.ChangeMax64(max(int64(b.bar.State().CurrentNum), 1))
		_ = b.bar.Finish()
		b.bar = nil
	}
}

// LogProgress logs progress lines at most every interval and one at the
// end of each collection.
type LogProgress struct {
	log   *zap.Logger
	every time.Duration

	mu          sync.Mutex
	coll        string
	total, done int64
	start, last time.Time
}

// NewLogProgress logs to log every interval (default 10s).
func NewLogProgress(log *zap.Logger, every time.Duration) *LogProgress {
	if every <= 0 {
		every = 10 * time.Second
	}
	return &LogProgress{log: log, every: every}
}

func (l *LogProgress) Begin(coll string, total int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.coll, l.total, l.done, l.start, l.last = coll, total, 0, now, now
	l.log.Info("verify collection started", zap.String("collection", coll), zap.Int64("documents", total))
}

func (l *LogProgress) Advance(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done += n
	if now := time.Now(); now.Sub(l.last) >= l.every {
		l.last = now
		l.emit("verify progress")
	}
}

func (l *LogProgress) End() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.emit("verify collection read")
}

func (l *LogProgress) emit(msg string) {
	el := time.Since(l.start)
	rate := 0.0
	if el > 0 {
		rate = float64(l.done) / el.Seconds()
	}
	l.log.Info(msg, zap.String("collection", l.coll), zap.Int64("done", l.done), zap.Int64("total", l.total),
		zap.Float64("docs_per_second", float64(int64(rate*10))/10), zap.Duration("elapsed", el.Round(time.Millisecond)))
}
