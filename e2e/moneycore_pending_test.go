//go:build moneycore_pending

package e2e

// Cases of the money-core contract the pipeline does not meet yet (the
// sink's fill-in of NULL-ed references inside child tables).
// They are not skipped: they are compiled and run with
// -tags moneycore_pending (go test -tags moneycore_pending ./e2e -run
// MoneyCorePending) and fail until the owning component does its part;
// whoever implements it moves the case into moneycore_test.go.

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// TestMoneyCorePendingNullFillIn: a reference stored NULL under policy
// null (parent missing, recorded in cdc.dangling_refs) is filled in when
// the parent arrives, and its dangling_refs row removed, so a child
// written before its parent ends correct (migration 00001: "The row is
// deleted when the sink fills the reference in").
func TestMoneyCorePendingNullFillIn(t *testing.T) {
	e := newMoneyEnv(t)
	e.startMoney()
	t.Run("null policy inside a child table", func(t *testing.T) {
		e.t = t
		buyer, seller, pr := primitive.NewObjectID(), primitive.NewObjectID(), primitive.NewObjectID()
		pts := bson.D{{Key: "available", Value: 0}, {Key: "used", Value: 0}, {Key: "total", Value: 0}}
		e.mcInsert("users", bson.D{{Key: "_id", Value: buyer}, {Key: "points", Value: pts}})
		e.mcInsert("purchaseRequests", bson.D{{Key: "_id", Value: pr}, {Key: "buyerId", Value: buyer}, {Key: "title", Value: "t"}, {Key: "status", Value: "shipped"},
			{Key: "deliveryInfo", Value: bson.D{{Key: "_id", Value: primitive.NewObjectID()}, {Key: "attempts", Value: bson.A{
				bson.D{{Key: "_id", Value: primitive.NewObjectID()}, {Key: "attemptNumber", Value: 1}, {Key: "status", Value: "failed"},
					{Key: "attemptedAt", Value: primitive.NewDateTimeFromTime(time.Now())}, {Key: "sellerId", Value: seller}}}}}}})
		e.mcEventually("attempt stored with a NULL seller and the reference recorded", func() string {
			id := e.mcUUID("purchaseRequests", pr.Hex())
			return mcJoin(
				mcCountIs(e, `SELECT count(*) FROM delivery_attempts WHERE delivery_info_id = $1::uuid AND seller_id IS NULL`, 1, id),
				mcCountIs(e, `SELECT count(*) FROM cdc.dangling_refs WHERE collection = 'purchaseRequests' AND doc_key = $1 AND ref_legacy_id = '`+seller.Hex()+`'`, 1, pr.Hex()),
			)
		})
		e.mcInsert("users", bson.D{{Key: "_id", Value: seller}, {Key: "points", Value: pts}})
		e.mcEventually("the attempt's seller filled in", func() string {
			return mcCountIs(e, `SELECT count(*) FROM delivery_attempts d JOIN id_map m ON m.new_id = d.seller_id
				WHERE m.collection = 'users' AND m.legacy_object_id = $1`, 1, seller.Hex())
		})
	})
}
