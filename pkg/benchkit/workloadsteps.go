package benchkit

import (
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ---- the business steps and the documents they write ----

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
