package snapshot

import "github.com/amanat/cdc/pkg/progress"

// Display shows a snapshot's progress (package progress).
type Display = progress.Display

// NopDisplay shows nothing.
type NopDisplay = progress.Nop
