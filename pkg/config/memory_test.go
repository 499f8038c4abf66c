package config_test

import (
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/config"
)

func TestMemoryLimit(t *testing.T) {
	tests := []struct {
		in       string
		limit    int64
		inFlight int64
		err      string
	}{
		{"256MiB", 256 << 20, 16 << 20, ""},
		{"1GiB", 1 << 30, 64 << 20, ""},
		{"1GB", 1e9, 1e9 / 16, ""},
		{" 512MiB ", 512 << 20, 32 << 20, ""},
		{"0", 0, 16 << 20, ""}, // off: the budgets of 256 MiB
		{"", 0, 16 << 20, ""},
		{"off", 0, 16 << 20, ""},
		{"10MiB", 0, 0, "below the minimum of 64 MiB"},
		{"lots", 0, 0, "is not a size"},
	}
	for _, tc := range tests {
		cfg := config.Default()
		cfg.MemoryLimit = tc.in
		got, err := cfg.MemoryBytes()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("memory_limit %q: error %v, want %q", tc.in, err, tc.err)
			}
			if verr := cfg.Validate(config.RoleSink); verr == nil || !strings.Contains(verr.Error(), "memory_limit") {
				t.Errorf("memory_limit %q: Validate %v, want a memory_limit error", tc.in, verr)
			}
			continue
		}
		if err != nil || got != tc.limit {
			t.Errorf("memory_limit %q = %d, %v; want %d", tc.in, got, err, tc.limit)
			continue
		}
		b := cfg.Budget()
		if b.Limit != tc.limit || b.TailerInFlightBytes != tc.inFlight || b.SinkFetchBytes != tc.inFlight {
			t.Errorf("memory_limit %q: budget %+v, want limit %d and %d in flight", tc.in, b, tc.limit, tc.inFlight)
		}
	}
}
