package oplog

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"

	"github.com/amanat/cdc/pkg/event"
)

// MajorityTime returns the operationTime of a majority read of db.coll in
// sess: a cluster time such that every write at or before it is visible
// to the session's later reads (causal consistency) and will not roll
// back. sess must be causally consistent.
func MajorityTime(ctx context.Context, client *mongo.Client, sess *mongo.Session, db, coll string) (event.ClusterTime, error) {
	c := client.Database(db).Collection(coll, options.Collection().SetReadConcern(readconcern.Majority()))
	err := mongo.WithSession(ctx, sess, func(sc context.Context) error {
		cur, err := c.Find(sc, bson.D{}, options.Find().SetLimit(1).SetProjection(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			return err
		}
		return cur.Close(sc)
	})
	if err != nil {
		return event.ClusterTime{}, fmt.Errorf("majority read of %s.%s: %w", db, coll, err)
	}
	ot := sess.OperationTime()
	if ot == nil {
		return event.ClusterTime{}, fmt.Errorf("the server returned no operationTime (not a replica set?)")
	}
	return event.ClusterTime{T: ot.T, I: ot.I}, nil
}

// StartToken returns a resume token equivalent to startAtOperationTime
// start on database db: the post-batch resume token of a change stream
// opened there with an empty first batch (MongoDB's high-water-mark
// token). Resuming after it returns every change at or after start.
func StartToken(ctx context.Context, client *mongo.Client, db string, start event.ClusterTime) (bson.Raw, error) {
	ts := start.Timestamp()
	cs, err := client.Database(db).Watch(ctx, mongo.Pipeline{},
		options.ChangeStream().SetStartAtOperationTime(&ts).SetBatchSize(0))
	if err != nil {
		return nil, fmt.Errorf("open a change stream at %s: %w", start, err)
	}
	defer cs.Close(context.WithoutCancel(ctx))
	tok := cs.ResumeToken()
	if tok == nil {
		return nil, fmt.Errorf("the change stream opened at %s returned no resume token", start)
	}
	return append(bson.Raw(nil), tok...), nil
}
