package tailer_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's run if a test leaves a goroutine behind
// (a server, a client or a loop not stopped).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
