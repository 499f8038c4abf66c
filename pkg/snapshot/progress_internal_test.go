package snapshot

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/bus/bustest"
)

// TestProgressStaleRevision: two runs on one database's progress record.
// The run whose revision is stale is refused with ErrConcurrent, both when
// it would create the record (another run created it first) and when it
// would update it (another run updated it since), decided by the KV
// library's sentinels.
func TestProgressStaleRevision(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := bustest.Start(t)
	kv, err := OpenProgressBucket(ctx, js, "snap_progress", 1)
	if err != nil {
		t.Fatal(err)
	}
	a := &progressStore{kv: kv, key: ProgressKey("escrow")}
	b := &progressStore{kv: kv, key: ProgressKey("escrow")}
	if err := a.save(ctx, &Progress{V: ProgressVersion, Database: "escrow", Collections: []CollectionProgress{{Name: "users"}}}); err != nil {
		t.Fatalf("first create: %v", err)
	}
	if err := b.save(ctx, &Progress{V: ProgressVersion, Database: "escrow", Collections: []CollectionProgress{{Name: "users"}}}); !errors.Is(err, ErrConcurrent) {
		t.Fatalf("second create over an existing record = %v, want ErrConcurrent", err)
	}
	if _, err := b.load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.save(ctx, &Progress{V: ProgressVersion, Database: "escrow", Collections: []CollectionProgress{{Name: "users"}}, Runs: 2}); err != nil {
		t.Fatalf("update at the current revision: %v", err)
	}
	if err := a.save(ctx, &Progress{V: ProgressVersion, Database: "escrow", Collections: []CollectionProgress{{Name: "users"}}, Runs: 3}); !errors.Is(err, ErrConcurrent) {
		t.Fatalf("update at a stale revision = %v, want ErrConcurrent", err)
	}
}
