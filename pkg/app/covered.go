package app

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/snapshot"
	"github.com/amanat/cdc/pkg/tailer"
)

// snapshotCovers is the tailer's Config.Covered: a lifecycle event at `at`
// (a drop, a rename, a dropped database) is covered once the database's
// last snapshot record (bucket snapshot.progress_bucket) is complete,
// includes every collection of colls and started at or after it (its
// scan sees every write at or before its start time T): Postgres was
// reloaded from the collections' state after the event, so the tailer may
// pass it. No bucket or no record is "not covered".
func snapshotCovers(js jetstream.JetStream, bucket, db string) tailer.CoveredFunc {
	return func(ctx context.Context, colls []string, at event.ClusterTime) (string, bool, error) {
		kv, err := js.KeyValue(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("snapshot progress bucket %s: %w", bucket, err)
		}
		p, err := snapshot.LoadProgress(ctx, kv, db)
		if err != nil || p == nil {
			return "no snapshot record", false, err
		}
		names := p.Names()
		by := fmt.Sprintf("the snapshot of %v started at cluster time %s (complete: %t)", names, p.ClusterTime, p.Complete)
		if !p.Complete || p.ClusterTime.Compare(at) < 0 {
			return by, false, nil
		}
		for _, c := range colls {
			if !slices.Contains(names, c) {
				return by, false, nil
			}
		}
		return by, true, nil
	}
}
