package app_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/amanat/cdc/pkg/pgtest"
)

// TestMain fails the package's run if a test leaves a goroutine behind
// (a server, a client or a loop not stopped).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithShared(m, pgtest.Options{}))
}
