package snapshot

import (
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/progress"
)

// Display shows a snapshot's progress (package progress).
type Display = progress.Display

// NopDisplay shows nothing.
type NopDisplay = progress.Nop

// BarDisplay is the terminal bar.
type BarDisplay = progress.Bar

// LogDisplay is the structured log lines.
type LogDisplay = progress.Log

// NewBarDisplay draws on w.
func NewBarDisplay(w io.Writer) *BarDisplay { return progress.NewBar(w) }

// NewLogDisplay logs "snapshot progress" lines every interval.
func NewLogDisplay(log *zap.Logger, every time.Duration) *LogDisplay {
	return progress.NewLog(log, every, "snapshot")
}
