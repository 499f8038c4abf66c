package app

import (
	"os"
	"runtime/debug"

	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/config"
)

// applyMemoryLimit makes memory_limit the Go runtime's soft memory limit
// (it covers the embedded NATS server too: it runs in this process), unless
// GOMEMLIMIT is set, which the runtime has already applied and which wins:
// an operator's explicit runtime setting is not overridden. It returns the
// in-flight budgets derived from memory_limit (config.Budget), applied
// either way.
func applyMemoryLimit(cfg *config.Config, log *zap.Logger) config.MemoryBudget {
	b := cfg.Budget()
	switch env := os.Getenv("GOMEMLIMIT"); {
	case env != "":
		log.Info("GOMEMLIMIT is set: it is the runtime's memory limit, memory_limit only sizes the buffers",
			zap.String("gomemlimit", env), zap.Int64("memory_limit_bytes", b.Limit))
	case b.Limit > 0:
		debug.SetMemoryLimit(b.Limit)
		log.Info("memory limit set", zap.Int64("memory_limit_bytes", b.Limit),
			zap.Int64("tailer_in_flight_bytes", b.TailerInFlightBytes), zap.Int64("sink_fetch_bytes", b.SinkFetchBytes))
	}
	return b
}
