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

// maxChain bounds how many entries ResumeFloor follows back: a chain holds
// 16 MB of operations per entry, so this covers transactions of gigabytes.
const maxChain = 4096

// ResumeFloor is the cluster time of the oldest oplog entry a change
// stream resumed at ct needs. It is ct itself, except when the entry at ct
// is the commit of a transaction written as a chain of applyOps entries
// (one over 16 MB: every entry but the last has o.partialTxn, each links
// the previous one by prevOpTime; MongoDB's
// src/mongo/db/transaction/transaction_operations.cpp getApplyOpsInfo,
// op_observer_impl.cpp logApplyOps). Every event of such a transaction
// carries the commit's cluster time, but the server reads the operations
// from the chain's entries, so resuming at any of its events fails with
// ChangeStreamHistoryLost (286) once the chain's first entry has left the
// oplog, although ct is still inside the window. ResumeFloor walks the
// prevOpTime links back to the first entry.
//
// An entry at ct that is not there (rolled off, or ct is a post-batch
// token's time between entries) leaves ct unchanged: Headroom reports
// whether it is lost.
func ResumeFloor(ctx context.Context, client *mongo.Client, ct event.ClusterTime) (event.ClusterTime, error) {
	oplog := client.Database("local").Collection("oplog.rs")
	floor := ct
	at := bson.Timestamp{T: ct.T, I: ct.I}
	for range maxChain {
		raw, err := oplog.FindOne(ctx, bson.D{{Key: "ts", Value: at}},
			options.FindOne().SetProjection(bson.D{{Key: "ts", Value: 1}, {Key: "prevOpTime", Value: 1}, {Key: "o.partialTxn", Value: 1}, {Key: "o.count", Value: 1}})).Raw()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return floor, nil
		}
		if err != nil {
			return ct, fmt.Errorf("%w: read local.oplog.rs at %d.%d: %v", ErrNoOplog, at.T, at.I, err)
		}
		t, i, ok := raw.Lookup("prevOpTime", "ts").TimestampOK()
		if !ok || t == 0 {
			// A single applyOps entry, a CRUD entry, or the chain's first.
			return floor, nil
		}
		floor, at = event.ClusterTime{T: t, I: i}, bson.Timestamp{T: t, I: i}
	}
	return floor, fmt.Errorf("%w: the transaction chain ending at %s is longer than %d entries", ErrNoOplog, ct, maxChain)
}
