package verify

import "github.com/amanat/cdc/pkg/progress"

// Progress shows verify's per-collection progress (package progress).
type Progress = progress.Display

// NopProgress shows nothing.
type NopProgress = progress.Nop
