package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/config"
)

// TestValidateContinuousVerify: the verify.continuous keys are off by
// default, bounded, and a sink running alone with the verifier on needs
// MongoDB.
func TestValidateContinuousVerify(t *testing.T) {
	d := config.Default().Verify.Continuous
	if d.Rate != 0 || d.Recheck != 30*time.Second {
		t.Fatalf("defaults: rate %d, recheck %s; want 0 (off), 30s", d.Rate, d.Recheck)
	}
	tests := []struct {
		name   string
		role   config.Role
		mutate func(c *config.Config)
		fields []string // nil: valid
	}{
		{"on for run", config.RoleAll, func(c *config.Config) { c.Verify.Continuous.Rate = 200 }, nil},
		{"on for a sink alone with mongo", config.RoleSink, func(c *config.Config) { c.Verify.Continuous.Rate = 200 }, nil},
		{"on for a sink alone without mongo", config.RoleSink, func(c *config.Config) {
			c.Verify.Continuous.Rate = 200
			c.Mongo.URI, c.Mongo.Database = "", ""
		}, []string{"mongo.uri", "mongo.database"}},
		{"off for a sink alone without mongo", config.RoleSink, func(c *config.Config) { c.Mongo.URI, c.Mongo.Database = "", "" }, nil},
		{"negative rate", config.RolePostgres, func(c *config.Config) { c.Verify.Continuous.Rate = -1 }, []string{"verify.continuous.rate"}},
		{"rate over the ceiling", config.RoleAll, func(c *config.Config) { c.Verify.Continuous.Rate = config.MaxVerifyRate + 1 }, []string{"verify.continuous.rate"}},
		{"recheck too short", config.RoleAll, func(c *config.Config) { c.Verify.Continuous.Recheck = 500 * time.Millisecond }, []string{"verify.continuous.recheck"}},
		{"recheck too long", config.RoleAll, func(c *config.Config) { c.Verify.Continuous.Recheck = 2 * time.Hour }, []string{"verify.continuous.recheck"}},
		{"shortest recheck", config.RoleAll, func(c *config.Config) { c.Verify.Continuous.Recheck = time.Second }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			if tc.role == config.RoleSink {
				c.NATS.URL = "nats://127.0.0.1:4222"
			}
			tc.mutate(&c)
			err := c.Validate(tc.role)
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v; want a ValidationError naming %v", err, tc.fields)
			}
			for _, f := range tc.fields {
				n := 0
				for _, fe := range ve {
					if fe.Field == f {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%s named %d times in %v", f, n, err)
				}
			}
			if tc.role == config.RoleSink && !strings.Contains(err.Error(), "verify.continuous.rate") {
				t.Errorf("%q does not say why MongoDB is needed", err)
			}
		})
	}
}

// TestContinuousVerifyFromEnv: the keys nest two levels under verify.
func TestContinuousVerifyFromEnv(t *testing.T) {
	c, err := config.Load("", env("CDC_VERIFY__CONTINUOUS__RATE=250", "CDC_VERIFY__CONTINUOUS__RECHECK=5s"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Verify.Continuous.Rate != 250 || c.Verify.Continuous.Recheck != 5*time.Second {
		t.Fatalf("verify.continuous = %+v", c.Verify.Continuous)
	}
	if _, err := config.Load("", env("CDC_VERIFY__CONTINUOUS__RATE=1.5")); err == nil || !strings.Contains(err.Error(), "verify.continuous.rate") {
		t.Fatalf("a fractional rate: %v", err)
	}
}
