package checkpoint_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the embedded NATS servers of the store tests are
// gone with their tests (bustest shuts them down in Cleanup).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
