package benchkit_test

import (
	"bytes"
	"testing"

	"github.com/amanat/cdc/pkg/benchkit"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// ops generates n events' worth of ops.
func ops(seed uint64, n int) (*benchkit.Workload, []benchkit.Op) {
	w := benchkit.NewWorkload(benchkit.WorkloadOptions{Seed: seed, Sellers: 20})
	var out []benchkit.Op
	for events := 0; events < n || w.Pending() > 0; {
		op := w.Next()
		events += op.Events()
		out = append(out, op)
	}
	return w, out
}

func marshalOp(t *testing.T, op benchkit.Op) []byte {
	t.Helper()
	b, err := bson.Marshal(bson.D{{Key: "kind", Value: int(op.Kind)}, {Key: "coll", Value: op.Coll}, {Key: "id", Value: op.ID},
		{Key: "doc", Value: op.Doc}, {Key: "update", Value: op.Update}, {Key: "action", Value: op.Action}})
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range op.Txn {
		b = append(b, marshalOp(t, sub)...)
	}
	return b
}

// TestWorkloadDeterministic: the same seed writes the same documents, byte
// for byte; another seed does not.
func TestWorkloadDeterministic(t *testing.T) {
	_, a := ops(1, 3000)
	_, b := ops(1, 3000)
	_, c := ops(2, 3000)
	if len(a) != len(b) {
		t.Fatalf("same seed: %d and %d ops", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(marshalOp(t, a[i]), marshalOp(t, b[i])) {
			t.Fatalf("same seed: op %d differs:\n%v\n%v", i, a[i], b[i])
		}
	}
	same := 0
	for i := 0; i < min(len(a), len(c)); i++ {
		if bytes.Equal(marshalOp(t, a[i]), marshalOp(t, c[i])) {
			same++
		}
	}
	if same > len(a)/10 {
		t.Fatalf("seeds 1 and 2 share %d of %d ops", same, len(a))
	}
}

// refsOf are the references a document of the workload holds.
func refsOf(t *testing.T, coll string, doc bson.D) []bson.ObjectID {
	t.Helper()
	raw, err := bson.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	r := bson.Raw(raw)
	var out []bson.ObjectID
	add := func(v bson.RawValue) {
		switch v.Type {
		case bson.TypeObjectID:
			out = append(out, v.ObjectID())
		case bson.TypeString:
			id, err := bson.ObjectIDFromHex(v.StringValue())
			if err != nil {
				t.Fatalf("%s: reference %q is not an ObjectId", coll, v.StringValue())
			}
			out = append(out, id)
		case 0:
		default:
			t.Fatalf("%s: reference of type %s", coll, v.Type)
		}
	}
	switch coll {
	case benchkit.CollUsers:
		add(r.Lookup("referredBy"))
	case benchkit.CollPurchaseRequests:
		add(r.Lookup("buyerId"))
		vals, _ := r.Lookup("preferredSellers").Array().Values()
		for _, v := range vals {
			add(v)
		}
	case benchkit.CollPayments:
		add(r.Lookup("purchaseRequestId"))
		add(r.Lookup("buyerId"))
		add(r.Lookup("metadata", "sellerId"))
	case benchkit.CollFundsLedger:
		add(r.Lookup("purchaseRequestId"))
		add(r.Lookup("paymentId"))
		add(r.Lookup("userId"))
	}
	return out
}

// TestWorkloadReferencesAndShape: every reference points at a document
// written before it and not deleted, deletes hit documents nothing
// references afterwards, the sellers come first, transactions hold the
// settle and release steps, the stats add up and the documents have the
// money-core sizes.
func TestWorkloadReferencesAndShape(t *testing.T) {
	w, all := ops(3, 20000)
	st := w.Stats()
	live := map[bson.ObjectID]string{}
	deleted := map[bson.ObjectID]bool{}
	events := 0
	check := func(i int, op benchkit.Op) {
		switch op.Kind {
		case benchkit.OpInsert:
			for _, ref := range refsOf(t, op.Coll, op.Doc) {
				if live[ref] == "" {
					t.Fatalf("op %d (%s): %s references %s, not written before it (deleted %v)", i, op.Action, op.Coll, ref.Hex(), deleted[ref])
				}
			}
			live[op.ID] = op.Coll
		case benchkit.OpUpdate:
			if live[op.ID] != op.Coll {
				t.Fatalf("op %d (%s): update of %s %s, which is not live", i, op.Action, op.Coll, op.ID.Hex())
			}
		case benchkit.OpDelete:
			if live[op.ID] != op.Coll {
				t.Fatalf("op %d (%s): delete of %s %s, which is not live", i, op.Action, op.Coll, op.ID.Hex())
			}
			delete(live, op.ID)
			deleted[op.ID] = true
		}
		for _, ref := range op.Refs {
			if deleted[ref] {
				t.Fatalf("op %d (%s) references the deleted %s", i, op.Action, ref.Hex())
			}
		}
	}
	for i, op := range all {
		if i < w.PrologueEvents() && (op.Kind != benchkit.OpInsert || op.Coll != benchkit.CollUsers || op.Action != "seller.signup") {
			t.Fatalf("op %d is %s, inside the prologue of %d sellers", i, op.Action, w.PrologueEvents())
		}
		events += op.Events()
		if op.Kind == benchkit.OpTxn {
			if op.Action != "request.settle" && op.Action != "request.release" || len(op.Txn) != 3 {
				t.Fatalf("op %d: transaction %s with %d writes", i, op.Action, len(op.Txn))
			}
			for _, sub := range op.Txn {
				check(i, sub)
			}
			continue
		}
		check(i, op)
	}
	if events != st.Events {
		t.Fatalf("the ops hold %d events, the stats %d", events, st.Events)
	}
	perColl := map[string]int{}
	for _, c := range live {
		perColl[c]++
	}
	for _, c := range benchkit.Collections {
		if perColl[c] != st.Live[c] {
			t.Errorf("%s: %d live documents, the stats say %d", c, perColl[c], st.Live[c])
		}
	}
	for _, op := range []string{"users.insert", "users.update", "users.delete", "purchaseRequests.insert", "purchaseRequests.update",
		"purchaseRequests.delete", "payments.insert", "payments.update", "fundsLedger.insert"} {
		if share := float64(st.ByOp[op]) / float64(st.Events); share < 0.003 {
			t.Errorf("%s is %.2f%% of the events: the mix lacks it", op, 100*share)
		}
	}
	if share := float64(st.TxnEvents) / float64(st.Events); share < 0.2 || share > 0.6 {
		t.Errorf("%.0f%% of the events are in transactions, want 20-60%%", 100*share)
	}
	sizes := map[string][2]float64{benchkit.CollUsers: {600, 1200}, benchkit.CollPurchaseRequests: {900, 2500},
		benchkit.CollPayments: {500, 1300}, benchkit.CollFundsLedger: {300, 800}}
	for c, r := range sizes {
		if got := st.AvgDocBytes(c); got < r[0] || got > r[1] {
			t.Errorf("%s documents average %.0f bytes, want %.0f-%.0f", c, got, r[0], r[1])
		}
	}
}
