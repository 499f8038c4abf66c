package replay_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/amanat/cdc/pkg/pgtest"
)

// TestMain runs the package's tests with a shared PostgreSQL cluster
// (pgtest): the replay tests apply to a real database. goleak fails the
// run if a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithShared(m, pgtest.Options{}))
}
