package verify

import (
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/progress"
)

// Progress shows verify's per-collection progress (package progress).
type Progress = progress.Display

// NopProgress shows nothing.
type NopProgress = progress.Nop

// NewBarProgress draws a bar on w (a terminal).
func NewBarProgress(w io.Writer) *progress.Bar { return progress.NewBar(w) }

// NewLogProgress logs "verify progress" lines every interval.
func NewLogProgress(log *zap.Logger, every time.Duration) *progress.Log {
	return progress.NewLog(log, every, "verify")
}
