package benchkit

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
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

var (
	firstNames = []string{"Aigerim", "Daniyar", "Madina", "Arman", "Dana", "Yerlan", "Aliya", "Timur", "Saule", "Nurlan", "Anna", "Ivan", "Elena", "Murat", "Zarina", "Askar"}
	lastNames  = []string{"Nurlanovna", "Abenov", "Seitkali", "Ivanova", "Petrov", "Zhaksylykov", "Omarova", "Bekov", "Kim", "Li", "Tulegenova", "Sadykov"}
	cities     = []string{"Almaty", "Astana", "Shymkent", "Karaganda", "Aktobe", "Dubai", "Istanbul", "Tashkent", "Bishkek", "Tbilisi"}
	words      = strings.Fields("fast delivery original sealed box warranty receipt needed before the end of month please check color size model genuine new unused gift wrap insured courier pickup city center weekend")
	products   = []string{"iPhone 15 Pro 256GB", "MacBook Air M3", "PlayStation 5 Slim", "Dyson V15", "Samsung S24 Ultra", "AirPods Pro 2", "Nintendo Switch OLED", "Kindle Paperwhite", "Garmin Fenix 7", "Sony WH-1000XM5"}
	specNames  = []string{"Storage", "Color", "Size", "Model", "Region", "Warranty", "Condition", "Voltage"}
	currencies = []string{"USD", "USD", "USDT", "USDT", "EUR", "KZT"}
	carriers   = []string{"CDEK", "DHL", "Kazpost", "Aramex", "FedEx"}
	failures   = []string{"Nobody home", "Address not found", "Customs hold", "Recipient unreachable"}
)

func (w *Workload) one(xs []string) string { return xs[w.rng.IntN(len(xs))] }

// text is n to m random words.
func (w *Workload) text(n, m int) string {
	k := n + w.rng.IntN(m-n+1)
	parts := make([]string, k)
	for i := range parts {
		parts[i] = w.one(words)
	}
	return strings.Join(parts, " ")
}

func (w *Workload) hex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[w.rng.IntN(16)]
	}
	return string(b)
}

func money(cents int64) bson.Decimal128 {
	d, err := bson.ParseDecimal128(fmt.Sprintf("%d.%02d", cents/100, cents%100))
	if err != nil {
		panic(err) // unreachable: the text is always a valid decimal
	}
	return d
}

func (w *Workload) newSeller() {
	u := w.userDoc(true)
	w.sellerUsers = append(w.sellerUsers, u.user)
	w.push(Op{Kind: OpInsert, Coll: CollUsers, ID: u.user.id, Doc: u.doc, Action: "seller.signup"})
}

func (w *Workload) newUser() {
	u := w.userDoc(false)
	if w.rng.IntN(5) == 0 {
		w.dormant = append(w.dormant, u.user)
	} else {
		w.buyers = append(w.buyers, u.user)
	}
	w.push(Op{Kind: OpInsert, Coll: CollUsers, ID: u.user.id, Doc: u.doc, Refs: u.refs, Action: "user.signup"})
}

type userDoc struct {
	user *wUser
	doc  bson.D
	refs []bson.ObjectID
}

// userDoc is a user of ~900 bytes (transforms/testdata/users/full.json's
// shape).
func (w *Workload) userDoc(seller bool) userDoc {
	w.n++
	now := w.now()
	u := &wUser{id: w.oid(now), n: w.n, seller: seller}
	u.total = int64(w.rng.IntN(50000))
	u.available = u.total
	role := "user"
	if seller {
		role = "seller"
	}
	first, last := w.one(firstNames), w.one(lastNames)
	var refs []bson.ObjectID
	doc := bson.D{
		{Key: "_id", Value: u.id},
		{Key: "email", Value: fmt.Sprintf("%s.%s.%d@example.com", strings.ToLower(first), strings.ToLower(last), u.n)},
		{Key: "firstName", Value: first},
		{Key: "lastName", Value: last},
		{Key: "username", Value: fmt.Sprintf("%s_%d", strings.ToLower(first), u.n)},
		{Key: "phone", Value: fmt.Sprintf("+770%08d", u.n)},
		{Key: "telegramId", Value: int64(5_000_000_000) + int64(u.n)},
		{Key: "telegramUsername", Value: fmt.Sprintf("%s_%s_%d", strings.ToLower(first), strings.ToLower(last[:1]), u.n)},
		{Key: "role", Value: role},
		{Key: "avatarUrl", Value: fmt.Sprintf("https://cdn.example.com/a/%d.png", u.n)},
		{Key: "walletAddress", Value: "0x" + w.hex(40)},
		{Key: "isVerified", Value: seller || w.rng.IntN(3) > 0},
		{Key: "isActive", Value: true},
		{Key: "isBanned", Value: false},
		{Key: "referralCode", Value: fmt.Sprintf("R%d-%s", u.n, strings.ToUpper(w.hex(4)))},
	}
	if !seller && len(w.sellerUsers) > 0 && w.rng.IntN(2) == 0 {
		ref := w.sellerUsers[w.rng.IntN(len(w.sellerUsers))].id
		doc = append(doc, bson.E{Key: "referredBy", Value: ref})
		refs = append(refs, ref)
	}
	doc = append(doc,
		bson.E{Key: "points", Value: bson.D{{Key: "available", Value: money(u.available)}, {Key: "used", Value: money(0)}, {Key: "total", Value: money(u.total)}}},
		bson.E{Key: "level", Value: int32(1 + w.rng.IntN(5))},
		bson.E{Key: "profile", Value: bson.D{{Key: "bio", Value: w.text(8, 24)}, {Key: "lang", Value: "ru"}, {Key: "city", Value: w.one(cities)}}},
		bson.E{Key: "settings", Value: bson.D{{Key: "notifications", Value: bson.D{{Key: "telegram", Value: true}, {Key: "email", Value: w.rng.IntN(2) == 0}}}, {Key: "currency", Value: w.one(currencies)}}},
		bson.E{Key: "lastLoginAt", Value: bson.NewDateTimeFromTime(now)},
		bson.E{Key: "createdAt", Value: bson.NewDateTimeFromTime(now)},
		bson.E{Key: "updatedAt", Value: bson.NewDateTimeFromTime(now)},
		bson.E{Key: "__v", Value: int32(0)},
	)
	return userDoc{user: u, doc: doc, refs: refs}
}

// updateUser is a login with points earned or spent: $set of the points
// (available never above total: the users table's CHECK), the login time
// and sometimes the bio.
func (w *Workload) updateUser() {
	var u *wUser
	if w.rng.IntN(10) == 0 {
		u = w.sellerUsers[w.rng.IntN(len(w.sellerUsers))]
	} else {
		u = w.buyers[w.rng.IntN(len(w.buyers))]
	}
	u.logins++
	earn := int64(w.rng.IntN(2000))
	u.total += earn
	u.available += earn
	if spend := int64(w.rng.IntN(1000)); spend <= u.available {
		u.available -= spend
		u.used += spend
	}
	now := w.date()
	set := bson.D{
		{Key: "points.available", Value: money(u.available)},
		{Key: "points.used", Value: money(u.used)},
		{Key: "points.total", Value: money(u.total)},
		{Key: "lastLoginAt", Value: now},
		{Key: "stats.logins", Value: int32(u.logins)},
		{Key: "updatedAt", Value: now},
	}
	if w.rng.IntN(4) == 0 {
		set = append(set, bson.E{Key: "profile.bio", Value: w.text(8, 24)})
	}
	w.push(Op{Kind: OpUpdate, Coll: CollUsers, ID: u.id, Update: bson.D{{Key: "$set", Value: set}}, Action: "user.login"})
}

func (w *Workload) deleteDormant() {
	u := pick(w.rng, &w.dormant)
	w.push(Op{Kind: OpDelete, Coll: CollUsers, ID: u.id, Action: "user.delete_dormant"})
}

// newRequest is a purchase request of ~1.6 kB with its delivery info and
// address, 2-5 specifications and 1-3 preferred sellers
// (transforms/testdata/purchaseRequests/full.json's shape).
func (w *Workload) newRequest() {
	buyer := w.buyers[w.rng.IntN(len(w.buyers))]
	now := w.now()
	r := &wRequest{id: w.oid(now), buyer: buyer, cents: int64(5000 + w.rng.IntN(300000)), currency: w.one(currencies)}
	r.seller = w.sellerUsers[w.rng.IntN(len(w.sellerUsers))]
	refs := []bson.ObjectID{buyer.id, r.seller.id}
	specs := bson.A{}
	for i, k := 0, 2+w.rng.IntN(4); i < k; i++ {
		specs = append(specs, bson.D{{Key: "name", Value: specNames[(i+w.rng.IntN(3))%len(specNames)]}, {Key: "value", Value: w.text(1, 3)}})
	}
	preferred := bson.A{r.seller.id}
	for i, k := 0, w.rng.IntN(3); i < k; i++ {
		s := w.sellerUsers[w.rng.IntN(len(w.sellerUsers))].id
		preferred = append(preferred, s)
		refs = append(refs, s)
	}
	images := bson.A{}
	for i, k := 0, w.rng.IntN(4); i < k; i++ {
		images = append(images, fmt.Sprintf("https://cdn.example.com/r/%s/%d.jpg", r.id.Hex(), i))
	}
	date := bson.NewDateTimeFromTime(now)
	doc := bson.D{
		{Key: "_id", Value: r.id},
		{Key: "buyerId", Value: buyer.id},
		{Key: "title", Value: w.one(products)},
		{Key: "description", Value: w.text(12, 40)},
		{Key: "budget", Value: money(r.cents)},
		{Key: "budgetCurrency", Value: r.currency},
		{Key: "quantity", Value: int32(1 + w.rng.IntN(3))},
		{Key: "status", Value: "active"},
		{Key: "escrowState", Value: "none"},
		{Key: "isService", Value: false},
		{Key: "releaseBlocked", Value: false},
		{Key: "tags", Value: bson.A{w.one(words), w.one(words)}},
		{Key: "images", Value: images},
		{Key: "deadline", Value: bson.NewDateTimeFromTime(now.Add(time.Duration(7+w.rng.IntN(30)) * 24 * time.Hour))},
		{Key: "metadata", Value: bson.D{{Key: "source", Value: "app"}, {Key: "cart", Value: int32(1)}, {Key: "utm", Value: w.one(words)}}},
		{Key: "deliveryInfo", Value: bson.D{
			{Key: "_id", Value: w.oid(now)},
			{Key: "method", Value: "courier"},
			{Key: "status", Value: "pending"},
			{Key: "address", Value: bson.D{
				{Key: "fullName", Value: w.one(firstNames) + " " + w.one(lastNames)},
				{Key: "phone", Value: fmt.Sprintf("+770%08d", buyer.n)},
				{Key: "country", Value: "KZ"},
				{Key: "region", Value: w.one(cities)},
				{Key: "city", Value: w.one(cities)},
				{Key: "street", Value: w.one(lastNames) + " street"},
				{Key: "building", Value: fmt.Sprint(1 + w.rng.IntN(200))},
				{Key: "apartment", Value: fmt.Sprint(1 + w.rng.IntN(300))},
				{Key: "postalCode", Value: fmt.Sprintf("%06d", w.rng.IntN(1000000))},
			}},
			{Key: "attempts", Value: bson.A{}},
			{Key: "createdAt", Value: date},
			{Key: "updatedAt", Value: date},
		}},
		{Key: "specifications", Value: specs},
		{Key: "preferredSellers", Value: preferred},
		{Key: "createdAt", Value: date},
		{Key: "updatedAt", Value: date},
		{Key: "__v", Value: int32(0)},
	}
	w.byState[stActive] = append(w.byState[stActive], r)
	w.push(Op{Kind: OpInsert, Coll: CollPurchaseRequests, ID: r.id, Doc: doc, Refs: refs, Action: "request.create"})
}

func (w *Workload) setRequest(r *wRequest, action string, set bson.D, push bson.D) Op {
	now := w.date()
	set = append(set, bson.E{Key: "updatedAt", Value: now})
	upd := bson.D{{Key: "$set", Value: set}}
	if push != nil {
		upd = append(upd, bson.E{Key: "$push", Value: push})
	}
	return Op{Kind: OpUpdate, Coll: CollPurchaseRequests, ID: r.id, Update: upd, Action: action}
}

func (w *Workload) cancelRequest() {
	r := pick(w.rng, &w.byState[stActive])
	w.byState[stCancelled] = append(w.byState[stCancelled], r)
	w.push(w.setRequest(r, "request.cancel", bson.D{{Key: "status", Value: "cancelled"}, {Key: "cancelledAt", Value: w.date()}}, nil))
}

// deleteRequest hard-deletes a cancelled request (it never had a payment,
// so nothing references it; its child rows go with it).
func (w *Workload) deleteRequest() {
	r := pick(w.rng, &w.byState[stCancelled])
	w.push(Op{Kind: OpDelete, Coll: CollPurchaseRequests, ID: r.id, Action: "request.delete"})
}

// createPayment is a pending Request Network payment of ~1 kB
// (transforms/testdata/payments/request_network.json's shape), then the
// request's move to pending_payment.
func (w *Workload) createPayment() {
	r := pick(w.rng, &w.byState[stActive])
	w.byState[stAwaitingPayment] = append(w.byState[stAwaitingPayment], r)
	now := w.now()
	r.payment = w.oid(now)
	w.paymentSeq++
	date := bson.NewDateTimeFromTime(now)
	doc := bson.D{
		{Key: "_id", Value: r.payment},
		{Key: "purchaseRequestId", Value: r.id},
		{Key: "buyerId", Value: r.buyer.id},
		{Key: "provider", Value: "request.network"},
		{Key: "direction", Value: "in"},
		{Key: "status", Value: "pending"},
		{Key: "escrowState", Value: "pending"},
		{Key: "amount", Value: money(r.cents)},
		{Key: "currency", Value: "USDT"},
		{Key: "chainId", Value: int32(137)},
		{Key: "tokenAddress", Value: "0xc2132D05D31c914a87C6611C10748AEb04B58e8F"},
		{Key: "payerAddress", Value: "0x" + w.hex(40)},
		{Key: "payeeAddress", Value: "0x" + w.hex(40)},
		{Key: "disputed", Value: false},
		{Key: "metadata", Value: bson.D{
			{Key: "sellerId", Value: r.seller.id.Hex()},
			{Key: "isTemplateCheckout", Value: w.rng.IntN(4) == 0},
			{Key: "rnRequestId", Value: fmt.Sprintf("01%08d%s", w.paymentSeq, w.hex(56))},
			{Key: "quote", Value: bson.D{{Key: "fxRate", Value: money(100 + int64(w.rng.IntN(5)))}}},
		}},
		{Key: "createdAt", Value: date},
		{Key: "updatedAt", Value: date},
		{Key: "__v", Value: int32(0)},
	}
	w.push(
		Op{Kind: OpInsert, Coll: CollPayments, ID: r.payment, Doc: doc, Refs: []bson.ObjectID{r.id, r.buyer.id, r.seller.id}, Action: "payment.create"},
		w.setRequest(r, "request.pending_payment", bson.D{{Key: "status", Value: "pending_payment"}, {Key: "escrowState", Value: "pending"}}, nil),
	)
}

// ledgerDoc is a funds-ledger entry of ~550 bytes
// (transforms/testdata/fundsLedger/hold.json's shape).
func (w *Workload) ledgerDoc(r *wRequest, entryType, escrow string, cents int64, description string) Op {
	now := w.now()
	id := w.oid(now)
	w.ledgerSeq++
	doc := bson.D{
		{Key: "_id", Value: id},
		{Key: "entryType", Value: entryType},
		{Key: "amount", Value: money(cents)},
		{Key: "currency", Value: "USDT"},
		{Key: "purchaseRequestId", Value: r.id},
		{Key: "paymentId", Value: r.payment},
		{Key: "userId", Value: r.buyer.id},
		{Key: "escrowState", Value: escrow},
		{Key: "idempotencyKey", Value: fmt.Sprintf("pay:%s:%s:%d", r.payment.Hex(), entryType, w.ledgerSeq)},
		{Key: "description", Value: description},
		{Key: "metadata", Value: bson.D{{Key: "txHash", Value: "0x" + w.hex(64)}, {Key: "source", Value: "escrow-service"}}},
		{Key: "createdAt", Value: bson.NewDateTimeFromTime(now)},
	}
	return Op{Kind: OpInsert, Coll: CollFundsLedger, ID: id, Doc: doc, Refs: []bson.ObjectID{r.id, r.payment, r.buyer.id}}
}

// settle confirms the payment and holds the funds in escrow: one MongoDB
// transaction updating the payment and the request and inserting the hold
// entry (which references both).
func (w *Workload) settle() {
	r := pick(w.rng, &w.byState[stAwaitingPayment])
	w.byState[stPaid] = append(w.byState[stPaid], r)
	now := w.date()
	pay := Op{Kind: OpUpdate, Coll: CollPayments, ID: r.payment, Update: bson.D{{Key: "$set", Value: bson.D{
		{Key: "status", Value: "completed"}, {Key: "escrowState", Value: "held"}, {Key: "txHash", Value: "0x" + w.hex(64)},
		{Key: "paidAt", Value: now}, {Key: "completedAt", Value: now}, {Key: "updatedAt", Value: now},
	}}}}
	req := w.setRequest(r, "", bson.D{{Key: "status", Value: "paid"}, {Key: "escrowState", Value: "held"}}, nil)
	hold := w.ledgerDoc(r, "hold", "held", r.cents, "Escrow hold on payment confirmation")
	w.push(Op{Kind: OpTxn, Txn: []Op{pay, req, hold}, Refs: []bson.ObjectID{r.id, r.payment, r.buyer.id}, Action: "request.settle"})
}

func (w *Workload) attempt(r *wRequest, status string) bson.D {
	r.attempts++
	now := w.date()
	a := bson.D{
		{Key: "_id", Value: w.oid(w.last)},
		{Key: "attemptNumber", Value: int32(r.attempts)},
		{Key: "status", Value: status},
		{Key: "attemptedAt", Value: now},
		{Key: "sellerId", Value: r.seller.id},
		{Key: "carrier", Value: w.one(carriers)},
		{Key: "trackingNumber", Value: fmt.Sprintf("TRK%010d", w.rng.IntN(1e9))},
	}
	if status == "failed" {
		a = append(a, bson.E{Key: "failureReason", Value: w.one(failures)})
	}
	return append(a, bson.E{Key: "createdAt", Value: now})
}

// ship is the seller's dispatch: delivery status, tracking and the
// seller's delivery info; sometimes a failed attempt first.
func (w *Workload) ship() {
	r := pick(w.rng, &w.byState[stPaid])
	w.byState[stShipped] = append(w.byState[stShipped], r)
	now := w.date()
	set := bson.D{
		{Key: "status", Value: "shipped"},
		{Key: "deliveryInfo.status", Value: "in_transit"},
		{Key: "deliveryInfo.carrier", Value: w.one(carriers)},
		{Key: "deliveryInfo.trackingNumber", Value: fmt.Sprintf("TRK%010d", w.rng.IntN(1e9))},
		{Key: "deliveryInfo.shippedAt", Value: now},
		{Key: "deliveryInfo.updatedAt", Value: now},
		{Key: "sellerDeliveryInfo", Value: bson.D{
			{Key: "method", Value: "courier"}, {Key: "carrier", Value: w.one(carriers)},
			{Key: "trackingNumber", Value: fmt.Sprintf("TRK%010d", w.rng.IntN(1e9))}, {Key: "shippedAt", Value: now},
			{Key: "proofUrls", Value: bson.A{fmt.Sprintf("https://cdn.example.com/p/%s.jpg", r.id.Hex())}},
			{Key: "notes", Value: w.text(2, 6)}, {Key: "updatedAt", Value: now},
		}},
	}
	var push bson.D
	if w.rng.IntN(10) < 3 {
		push = bson.D{{Key: "deliveryInfo.attempts", Value: w.attempt(r, "failed")}}
	}
	w.push(w.setRequest(r, "request.ship", set, push))
}

func (w *Workload) deliver() {
	r := pick(w.rng, &w.byState[stShipped])
	w.byState[stDelivered] = append(w.byState[stDelivered], r)
	now := w.date()
	set := bson.D{{Key: "status", Value: "delivered"}, {Key: "deliveryInfo.status", Value: "delivered"},
		{Key: "deliveryInfo.deliveredAt", Value: now}, {Key: "deliveryInfo.updatedAt", Value: now}}
	w.push(w.setRequest(r, "request.deliver", set, bson.D{{Key: "deliveryInfo.attempts", Value: w.attempt(r, "delivered")}}))
}

// release completes the request and releases the escrow to the seller: one
// transaction updating the request and inserting the release and fee
// entries.
func (w *Workload) release() {
	r := pick(w.rng, &w.byState[stDelivered])
	req := w.setRequest(r, "", bson.D{{Key: "status", Value: "completed"}, {Key: "escrowState", Value: "released"}, {Key: "completedAt", Value: w.date()}}, nil)
	fee := max(r.cents*2/100, 1)
	rel := w.ledgerDoc(r, "release", "released", r.cents-fee, "Escrow released to the seller")
	feeOp := w.ledgerDoc(r, "fee", "released", fee, "Platform fee")
	w.push(Op{Kind: OpTxn, Txn: []Op{req, rel, feeOp}, Refs: []bson.ObjectID{r.id, r.payment, r.buyer.id}, Action: "request.release"})
}
