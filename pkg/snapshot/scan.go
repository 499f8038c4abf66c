package snapshot

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/mongoid"
)

// nextBatch reads the next BatchSize documents in _id order after last
// (from the start when !hasLast), and the cluster time of the read.
func (r *Runner) nextBatch(ctx context.Context, sess *mongo.Session, coll *mongo.Collection, last bson.RawValue, hasLast bool) ([]bson.Raw, event.ClusterTime, error) {
	n := r.cfg.BatchSize
	var out []bson.Raw
	err := mongo.WithSession(ctx, sess, func(sc context.Context) error {
		filter := bson.D{}
		if hasLast {
			filter = bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: last}}}}
		}
		docs, err := find(sc, coll, filter, n)
		if err != nil {
			return err
		}
		out = docs
		if hasLast && len(out) < n {
			if above := mongoid.TypesAbove(last.Type); len(above) > 0 {
				more, err := find(sc, coll, bson.D{{Key: "_id", Value: bson.D{{Key: "$type", Value: above}}}}, n-len(out))
				if err != nil {
					return err
				}
				out = append(out, more...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, event.ClusterTime{}, err
	}
	ot := sess.OperationTime()
	if ot == nil {
		return nil, event.ClusterTime{}, fmt.Errorf("the server returned no operationTime")
	}
	return out, event.ClusterTime{T: ot.T, I: ot.I}, nil
}

func find(ctx context.Context, coll *mongo.Collection, filter bson.D, limit int) ([]bson.Raw, error) {
	cur, err := coll.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)).SetBatchSize(int32(min(limit, 1<<20))))
	if err != nil {
		return nil, err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	out := make([]bson.Raw, 0, limit)
	for cur.Next(ctx) {
		out = append(out, append(bson.Raw(nil), cur.Current...))
	}
	return out, cur.Err()
}
