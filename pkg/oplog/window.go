package oplog

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/amanat/cdc/pkg/event"
)

// Window returns the cluster times of the oldest and the newest entry of
// the oplog (local.oplog.rs in natural order), which is how MongoDB's own
// tools (rs.printReplicationInfo) measure it. It fails with ErrNoOplog
// when the oplog is empty or unreadable.
func Window(ctx context.Context, client *mongo.Client) (oldest, newest event.ClusterTime, err error) {
	if oldest, err = edge(ctx, client, 1); err != nil {
		return oldest, newest, err
	}
	if newest, err = edge(ctx, client, -1); err != nil {
		return oldest, newest, err
	}
	return oldest, newest, nil
}

// Oldest returns the cluster time of the oldest oplog entry.
func Oldest(ctx context.Context, client *mongo.Client) (event.ClusterTime, error) {
	return edge(ctx, client, 1)
}

func edge(ctx context.Context, client *mongo.Client, dir int) (event.ClusterTime, error) {
	opts := options.FindOne().
		SetSort(bson.D{{Key: "$natural", Value: dir}}).
		SetProjection(bson.D{{Key: "ts", Value: 1}})
	raw, err := client.Database("local").Collection("oplog.rs").FindOne(ctx, bson.D{}, opts).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return event.ClusterTime{}, fmt.Errorf("%w: local.oplog.rs is empty (is this a replica set member?)", ErrNoOplog)
	}
	if err != nil {
		return event.ClusterTime{}, fmt.Errorf("%w: read local.oplog.rs: %v", ErrNoOplog, err)
	}
	t, i, ok := raw.Lookup("ts").TimestampOK()
	if !ok {
		return event.ClusterTime{}, fmt.Errorf("%w: oplog entry without a ts timestamp", ErrNoOplog)
	}
	return event.ClusterTime{T: t, I: i}, nil
}
