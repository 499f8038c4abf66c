package replay_test

import (
	"os"
	"testing"

	"github.com/amanat/cdc/pkg/pgtest"
)

// TestMain runs the package's tests with a shared PostgreSQL cluster
// (pgtest): the replay tests apply to a real database.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, pgtest.Options{})) }
