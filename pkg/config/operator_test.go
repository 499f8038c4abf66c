package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/config"
)

// TestValidateOperatorSections: the snapshot and oplog sections name the
// bad field; allow-list entries must be exact hosts, never patterns.
func TestValidateOperatorSections(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(c *config.Config)
		field string
	}{
		{"defaults", func(*config.Config) {}, ""},
		{"ipv6", func(c *config.Config) { c.Snapshot.AllowedTargets = []string{"[::1]:5432", "::1"} }, ""},
		{"plain hosts", func(c *config.Config) { c.Snapshot.AllowedTargets = []string{"db1.internal", "10.0.0.5:5433"} }, ""},
		{"wildcard", func(c *config.Config) { c.Snapshot.AllowedTargets = []string{"*.staging.internal"} }, "snapshot.allowed_targets[0]"},
		{"url", func(c *config.Config) { c.Snapshot.AllowedTargets = []string{"postgres://db1/x"} }, "snapshot.allowed_targets[0]"},
		{"empty entry", func(c *config.Config) { c.Snapshot.AllowedTargets = []string{"db1", ""} }, "snapshot.allowed_targets[1]"},
		{"batch size", func(c *config.Config) { c.Snapshot.BatchSize = 0 }, "snapshot.batch_size"},
		{"bucket name", func(c *config.Config) { c.Snapshot.ProgressBucket = "a.b" }, "snapshot.progress_bucket"},
		{"bucket shared with checkpoints", func(c *config.Config) { c.Snapshot.ProgressBucket = c.NATS.CheckpointBucket }, "snapshot.progress_bucket"},
		{"negative wait", func(c *config.Config) { c.Snapshot.TailerWait = -1 }, "snapshot.tailer_wait"},
		{"negative headroom", func(c *config.Config) { c.Oplog.HeadroomWarning = -1 }, "oplog.headroom_warning"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			tc.edit(&c)
			err := c.Validate(config.RolePostgres | config.RoleTailer)
			// RoleTailer needs a URI and database; only our fields matter here.
			var mine []string
			if ve, ok := err.(config.ValidationError); ok {
				for _, fe := range ve {
					if strings.HasPrefix(fe.Field, "snapshot.") || strings.HasPrefix(fe.Field, "oplog.") {
						mine = append(mine, fe.Field)
					}
				}
			}
			switch {
			case tc.field == "" && len(mine) > 0:
				t.Fatalf("unexpected errors on %v: %v", mine, err)
			case tc.field != "" && (len(mine) != 1 || mine[0] != tc.field):
				t.Fatalf("want one error on %s, got %v (%v)", tc.field, mine, err)
			}
		})
	}
}

func TestAllowedTargetsFromEnv(t *testing.T) {
	cfg, err := config.Load("", env("CDC_SNAPSHOT__ALLOWED_TARGETS= db1.internal , db2:5433,"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"db1.internal", "db2:5433"}; !reflect.DeepEqual(cfg.Snapshot.AllowedTargets, want) {
		t.Fatalf("allowed_targets = %q, want %q", cfg.Snapshot.AllowedTargets, want)
	}
}
