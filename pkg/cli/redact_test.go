package cli

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestEnvCredentials: without a loaded configuration, the exit message
// is still scrubbed of what the environment holds.
func TestEnvCredentials(t *testing.T) {
	t.Setenv("CDC_PG_URL", "postgres://cdc:S3crPG/x@pg/db")
	t.Setenv("CDC_NATS__AUTH__PASSWORD", "S3crNATS")
	t.Setenv("CDC_NATS__AUTH__TOKEN_FILE", "/run/secrets/token")
	t.Setenv("CDC_SINK__BATCH_SIZE", "500")
	conns, secrets := envCredentials()
	if !slices.Contains(conns, "postgres://cdc:S3crPG/x@pg/db") || !slices.Contains(secrets, "S3crNATS") {
		t.Fatalf("conns %q secrets %q", conns, secrets)
	}
	if slices.Contains(conns, "500") || slices.Contains(secrets, "/run/secrets/token") {
		t.Fatalf("not credentials taken as such: conns %q secrets %q", conns, secrets)
	}
	g := &globals{}
	msg := g.scrubber().Error(errors.New(`parse "postgres://cdc:S3crPG/x@pg/db": invalid port ":S3crPG" after host; nats auth S3crNATS`)).Error()
	if strings.Contains(msg, "S3cr") {
		t.Fatalf("exit message leaks: %s", msg)
	}
}
