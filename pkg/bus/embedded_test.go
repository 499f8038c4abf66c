package bus_test

import (
	"errors"
	"testing"

	"github.com/amanat/cdc/pkg/bus"
)

// TestStoreLock: a second embedded server on the same store is refused;
// after Shutdown the store is free again.
func TestStoreLock(t *testing.T) {
	dir := t.TempDir()
	a, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: -1, StoreDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: -1, StoreDir: dir}, nil); !errors.Is(err, bus.ErrStoreInUse) {
		t.Fatalf("second server on one store: %v, want ErrStoreInUse", err)
	}
	a.Shutdown()
	b, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: -1, StoreDir: dir}, nil)
	if err != nil {
		t.Fatalf("store not released by Shutdown: %v", err)
	}
	b.Shutdown()
}
