package state_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/amanat/cdc/pkg/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.WithShared(m, pgtest.Options{}))
}
