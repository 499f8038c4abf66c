package benchkit

import (
	"encoding/binary"
	"math/rand/v2"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The money-core collections the workload writes (the built-in transforms'
// names: transforms/users.yaml, purchaseRequests.yaml, payments.yaml,
// fundsLedger.yaml).
const (
	CollUsers            = "users"
	CollPurchaseRequests = "purchaseRequests"
	CollPayments         = "payments"
	CollFundsLedger      = "fundsLedger"
)

// Collections lists the workload's collections in reference order: every
// collection references only those before it.
var Collections = []string{CollUsers, CollPurchaseRequests, CollPayments, CollFundsLedger}

// OpKind is what an Op does to MongoDB.
type OpKind int

// The kinds of Op.
const (
	OpInsert OpKind = iota
	OpUpdate
	OpDelete
	// OpTxn is a multi-document transaction: Txn's inserts and updates,
	// committed together.
	OpTxn
)

// Op is one write of the workload. Inside a transaction (Txn) only
// inserts and updates occur.
type Op struct {
	Kind OpKind
	Coll string
	ID   bson.ObjectID
	// Doc is the inserted document (OpInsert).
	Doc bson.D
	// Update is the update document, $set and $push (OpUpdate).
	Update bson.D
	// Txn are the writes of a transaction (OpTxn), in order.
	Txn []Op
	// Refs are the documents this write's documents reference; the writer
	// writes nothing that references a document still waiting in its
	// batches before that document.
	Refs []bson.ObjectID
	// Action names the business step, for the counts ("request.settle").
	Action string
}

// Events is the number of change events the op produces in the change
// stream: one per document write.
func (o *Op) Events() int {
	if o.Kind == OpTxn {
		return len(o.Txn)
	}
	return 1
}

// WorkloadOptions configures NewWorkload.
type WorkloadOptions struct {
	// Seed fixes every choice and every generated value: two workloads with
	// the same seed (and the synthetic clock) write the same documents.
	Seed uint64
	// Sellers is the number of seller accounts written first (the
	// prologue). Every reference from one user's documents to another
	// user (referrer, preferred sellers, delivery attempts, a payment's
	// seller) points at a seller, so all other references stay within one
	// buyer's documents, which the partitioned raw pipeline relies on.
	// Default 200.
	Sellers int
	// Clock stamps createdAt, updatedAt and the other dates. Nil: a
	// synthetic clock from 2026-01-01T00:00:00Z advancing 37 ms per call,
	// so that the documents are the same on every run. The lag phase
	// passes a real clock: the stamp is then the write time.
	Clock func() time.Time
}

// Workload generates money-core changes: a deterministic state machine
// over users and the purchase requests they make (created, paid for,
// settled into escrow in a transaction with its ledger entry, shipped,
// delivered, released in a transaction with the release and fee entries,
// or cancelled and deleted). It is not safe for concurrent use.
type Workload struct {
	rng     *rand.Rand
	clock   func() time.Time
	last    time.Time
	sellers int
	queue   []Op
	n       int // users created, for unique emails and codes

	sellerUsers []*wUser
	buyers      []*wUser
	dormant     []*wUser
	byState     [numStates][]*wRequest
	paymentSeq  int
	ledgerSeq   int

	stats Stats
}

// Stats counts what a Workload generated.
type Stats struct {
	// Events is the number of change events (Op.Events summed).
	Events int `json:"events"`
	// Transactions is the number of multi-document transactions and
	// TxnEvents the events inside them.
	Transactions int `json:"transactions"`
	TxnEvents    int `json:"txn_events"`
	// ByOp counts events by "<collection>.<insert|update|delete>".
	ByOp map[string]int `json:"by_op"`
	// ByAction counts ops by business step ("request.settle").
	ByAction map[string]int `json:"by_action"`
	// Live is the number of documents each collection holds at the end:
	// the rows each parent table must hold once replicated.
	Live map[string]int `json:"live"`
	// InsertedBytes and Inserted sum the BSON size of the inserted
	// documents measured (every 8th of each collection) and count them
	// (AvgDocBytes divides them).
	InsertedBytes map[string]int64 `json:"inserted_bytes"`
	Inserted      map[string]int   `json:"inserted"`
}

// AvgDocBytes is the mean BSON size of the documents inserted into coll.
func (s Stats) AvgDocBytes(coll string) float64 {
	if s.Inserted[coll] == 0 {
		return 0
	}
	return float64(s.InsertedBytes[coll]) / float64(s.Inserted[coll])
}

type wUser struct {
	id                     bson.ObjectID
	n                      int
	available, used, total int64 // points, in hundredths
	logins                 int
	seller                 bool
}

// Request states.
const (
	stActive = iota
	stAwaitingPayment
	stPaid
	stShipped
	stDelivered
	stCancelled
	numStates
)

type wRequest struct {
	id       bson.ObjectID
	buyer    *wUser
	seller   *wUser
	cents    int64
	currency string
	payment  bson.ObjectID
	attempts int
}

var syntheticBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// NewWorkload returns a generator positioned before its first op.
func NewWorkload(opts WorkloadOptions) *Workload {
	if opts.Sellers <= 0 {
		opts.Sellers = 200
	}
	w := &Workload{
		rng:     rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		clock:   opts.Clock,
		sellers: opts.Sellers,
		stats: Stats{ByOp: map[string]int{}, ByAction: map[string]int{}, Live: map[string]int{},
			InsertedBytes: map[string]int64{}, Inserted: map[string]int{}},
	}
	if w.clock == nil {
		t := syntheticBase
		w.clock = func() time.Time { t = t.Add(37 * time.Millisecond); return t }
	}
	for _, c := range Collections {
		w.stats.Live[c] = 0
	}
	return w
}

// Pending is the number of ops already decided and not yet returned by
// Next (a business step can be several ops: a payment and the request's
// move to pending_payment). A paced writer drains them in the same tick,
// so that their stamps stay the write time.
func (w *Workload) Pending() int { return len(w.queue) }

// PrologueEvents is the number of events at the start that create the
// sellers (one insert each).
func (w *Workload) PrologueEvents() int { return w.sellers }

// Stats returns the counts so far (maps copied).
func (w *Workload) Stats() Stats {
	s := w.stats
	s.ByOp, s.ByAction, s.Live = copyMap(s.ByOp), copyMap(s.ByAction), copyMap(s.Live)
	s.Inserted = copyMap(s.Inserted)
	s.InsertedBytes = copyMap(s.InsertedBytes)
	return s
}

func copyMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// now is the clock at millisecond resolution (what a BSON date holds),
// never going back. Every update changes its document whatever the stamp
// (a status, a pushed attempt, a login counter), so MongoDB never skips
// one as a no-op.
func (w *Workload) now() time.Time {
	t := w.clock().Truncate(time.Millisecond)
	if t.Before(w.last) {
		t = w.last
	}
	w.last = t
	return t
}

func (w *Workload) date() bson.DateTime { return bson.NewDateTimeFromTime(w.now()) }

// oid is an ObjectId whose time is the clock's and whose other 8 bytes
// come from the seeded generator.
func (w *Workload) oid(at time.Time) bson.ObjectID {
	var id bson.ObjectID
	binary.BigEndian.PutUint32(id[0:4], uint32(at.Unix()))
	binary.BigEndian.PutUint64(id[4:12], w.rng.Uint64())
	return id
}

// Next returns the next op.
func (w *Workload) Next() Op {
	if len(w.queue) == 0 {
		w.step()
	}
	op := w.queue[0]
	w.queue = w.queue[1:]
	w.count(op)
	return op
}

func (w *Workload) count(op Op) {
	w.stats.ByAction[op.Action]++
	if op.Kind == OpTxn {
		w.stats.Transactions++
		w.stats.TxnEvents += len(op.Txn)
		for _, sub := range op.Txn {
			w.countWrite(sub)
		}
		return
	}
	w.countWrite(op)
}

func (w *Workload) countWrite(op Op) {
	w.stats.Events++
	switch op.Kind {
	case OpInsert:
		w.stats.ByOp[op.Coll+".insert"]++
		w.stats.Live[op.Coll]++
		// Every 8th document is measured: the mean is as good, the
		// generator four times cheaper.
		if w.stats.ByOp[op.Coll+".insert"]%8 == 1 {
			if b, err := bson.Marshal(op.Doc); err == nil {
				w.stats.InsertedBytes[op.Coll] += int64(len(b))
				w.stats.Inserted[op.Coll]++
			}
		}
	case OpUpdate:
		w.stats.ByOp[op.Coll+".update"]++
	case OpDelete:
		w.stats.ByOp[op.Coll+".delete"]++
		w.stats.Live[op.Coll]--
	}
}

// action is one business step with its weight; feasible says whether the
// state allows it.
type action struct {
	weight   float64
	feasible func() bool
	run      func()
}

func (w *Workload) actions() []action {
	has := func(s int) func() bool { return func() bool { return len(w.byState[s]) > 0 } }
	return []action{
		{7, func() bool { return true }, w.newUser},
		{8, func() bool { return len(w.buyers) > 0 }, w.updateUser},
		{10, func() bool { return len(w.buyers) > 0 }, w.newRequest},
		{1.5, has(stActive), w.cancelRequest},
		{1.5, has(stCancelled), w.deleteRequest},
		{9, has(stActive), w.createPayment},
		{9, has(stAwaitingPayment), w.settle},
		{12, has(stPaid), w.ship},
		{7, has(stShipped), w.deliver},
		{7, has(stDelivered), w.release},
		{0.7, func() bool { return len(w.dormant) > 0 }, w.deleteDormant},
	}
}

func (w *Workload) step() {
	if len(w.sellerUsers) < w.sellers {
		w.newSeller()
		return
	}
	acts := w.actions()
	var total float64
	for _, a := range acts {
		if a.feasible() {
			total += a.weight
		}
	}
	r := w.rng.Float64() * total
	for _, a := range acts {
		if !a.feasible() {
			continue
		}
		if r < a.weight {
			a.run()
			return
		}
		r -= a.weight
	}
	acts[0].run()
}

// pick removes and returns a random element of the list (swap-remove).
func pick[T any](rng *rand.Rand, list *[]T) T {
	l := *list
	i := rng.IntN(len(l))
	v := l[i]
	l[i] = l[len(l)-1]
	*list = l[:len(l)-1]
	return v
}

func (w *Workload) push(ops ...Op) { w.queue = append(w.queue, ops...) }
