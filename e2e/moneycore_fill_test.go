package e2e

import (
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestMoneyCoreNullFillIn: a reference stored NULL under policy null
// (parent missing, recorded in cdc.dangling_refs) is filled in when the
// parent arrives, and its dangling_refs row removed; inside a child table
// too (the child rows are re-applied from the version that left them NULL).
func TestMoneyCoreNullFillIn(t *testing.T) {
	e := newMoneyEnv(t)
	e.startMoney()
	t.Run("null policy: the reference is filled in when the parent arrives", func(t *testing.T) {
		e.t = t
		child, parent := bson.NewObjectID(), bson.NewObjectID()
		pts := bson.D{{Key: "available", Value: 0}, {Key: "used", Value: 0}, {Key: "total", Value: 0}}
		e.mcInsert("users", bson.D{{Key: "_id", Value: child}, {Key: "referredBy", Value: parent}, {Key: "points", Value: pts}})
		e.mcExpectRow("users", "users", child.Hex(), map[string]string{"referred_by_id": "NULL"})
		e.mcInsert("users", bson.D{{Key: "_id", Value: parent}, {Key: "points", Value: pts}})
		e.mcExpectRow("users", "users", child.Hex(), map[string]string{"referred_by_id": mcRef("users", parent.Hex())})
		if n := e.mcCount(`SELECT count(*) FROM cdc.dangling_refs WHERE doc_key = $1`, child.Hex()); n != 0 {
			t.Fatalf("the dangling_refs row stayed after the reference was filled in")
		}
	})

	t.Run("null policy inside a child table", func(t *testing.T) {
		e.t = t
		buyer, seller, pr := bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID()
		pts := bson.D{{Key: "available", Value: 0}, {Key: "used", Value: 0}, {Key: "total", Value: 0}}
		e.mcInsert("users", bson.D{{Key: "_id", Value: buyer}, {Key: "points", Value: pts}})
		e.mcInsert("purchaseRequests", bson.D{{Key: "_id", Value: pr}, {Key: "buyerId", Value: buyer}, {Key: "title", Value: "t"}, {Key: "status", Value: "shipped"},
			{Key: "deliveryInfo", Value: bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "attempts", Value: bson.A{
				bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "attemptNumber", Value: 1}, {Key: "status", Value: "failed"},
					{Key: "attemptedAt", Value: bson.NewDateTimeFromTime(time.Now())}, {Key: "sellerId", Value: seller}}}}}}})
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

// TestMoneyCoreTenMegabyteDocument: a 10 MB document (MongoDB
// allows 16 MiB) is replicated, not dead-lettered, and the documents after
// it still arrive (the embedded server's max_payload is 64 MiB; a change
// over a server's limit goes through the large-object store, see
// TestTwentyMegabyteChangeEvent).
func TestMoneyCoreTenMegabyteDocument(t *testing.T) {
	e := newMoneyEnv(t)
	e.startMoney()
	pts := bson.D{{Key: "available", Value: 0}, {Key: "used", Value: 0}, {Key: "total", Value: 0}}
	big, after := bson.NewObjectID(), bson.NewObjectID()
	e.mcInsert("users", bson.D{{Key: "_id", Value: big}, {Key: "email", Value: "big@example.com"},
		{Key: "profile", Value: bson.D{{Key: "bio", Value: strings.Repeat("x", 10<<20)}}}, {Key: "points", Value: pts}})
	e.mcInsert("users", bson.D{{Key: "_id", Value: after}, {Key: "email", Value: "after@example.com"}, {Key: "points", Value: pts}})
	e.mcExpectRow("users", "users", after.Hex(), map[string]string{"email": "after@example.com"})
	e.mcEventually("the 10 MB document applied", func() string {
		if e.mcRow("users", "id", "users", big.Hex()) == nil {
			return "not applied"
		}
		return ""
	})
	if n := e.mcCount(`SELECT count(*) FROM cdc.dead_letters WHERE doc_key = $1`, big.Hex()); n != 0 {
		t.Fatalf("the 10 MB document was dead-lettered: %s", e.mcDeadLetterSummary())
	}
}
