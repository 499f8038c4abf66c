package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/mongoid"
)

// mongoSide reads MongoDB in one causally consistent session, so that
// every read carries an operationTime: the cluster time it observed.
type mongoSide struct {
	client  *mongo.Client
	db      *mongo.Database
	sess    *mongo.Session
	timeout time.Duration
}

func newMongoSide(client *mongo.Client, db string, timeout time.Duration) (*mongoSide, error) {
	sess, err := client.StartSession(options.Session().SetCausalConsistency(true))
	if err != nil {
		return nil, mongoErr("start a session", err)
	}
	return &mongoSide{client: client, db: client.Database(db), sess: sess, timeout: timeout}, nil
}

func (m *mongoSide) close(ctx context.Context) { m.sess.EndSession(ctx) }

// opTime is the session's operationTime: the cluster time of its last
// operation.
func (m *mongoSide) opTime() (event.ClusterTime, error) {
	ot := m.sess.OperationTime()
	if ot == nil {
		return event.ClusterTime{}, errors.New("the server returned no operationTime (MongoDB must be a replica set)")
	}
	return event.ClusterTime{T: ot.T, I: ot.I}, nil
}

// timed runs fn in the session with the operation timeout and returns the
// cluster times before (lo) and after (hi) it: what fn read is the state
// of some moment within [lo, hi].
func (m *mongoSide) timed(ctx context.Context, op string, fn func(sc context.Context) error) (lo, hi event.ClusterTime, err error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	err = mongo.WithSession(ctx, m.sess, func(sc context.Context) error {
		if err := m.db.RunCommand(sc, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
			return err
		}
		var err error
		if lo, err = m.opTime(); err != nil {
			return err
		}
		if err := fn(sc); err != nil {
			return err
		}
		hi, err = m.opTime()
		return err
	})
	return lo, hi, mongoErr(op, err)
}

// now returns the current cluster time.
func (m *mongoSide) now(ctx context.Context) (event.ClusterTime, error) {
	_, hi, err := m.timed(ctx, "read the cluster time", func(context.Context) error { return nil })
	return hi, err
}

// count counts a collection's documents exactly (countDocuments).
func (m *mongoSide) count(ctx context.Context, coll string) (n int64, lo, hi event.ClusterTime, err error) {
	lo, hi, err = m.timed(ctx, "count "+coll, func(sc context.Context) error {
		var err error
		n, err = m.db.Collection(coll).CountDocuments(sc, bson.D{})
		return err
	})
	return n, lo, hi, err
}

var idOnly = bson.D{{Key: "_id", Value: 1}}

// nextChunk reads up to n documents in _id order after last (from the
// start when !hasLast); idsOnly projects _id alone.
func (m *mongoSide) nextChunk(ctx context.Context, coll string, last bson.RawValue, hasLast bool, n int, idsOnly bool) (docs []bson.Raw, lo, hi event.ClusterTime, err error) {
	c := m.db.Collection(coll)
	lo, hi, err = m.timed(ctx, "read "+coll, func(sc context.Context) error {
		filter := bson.D{}
		if hasLast {
			filter = bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: last}}}}
		}
		var err error
		if docs, err = find(sc, c, filter, n, idsOnly); err != nil {
			return err
		}
		if hasLast && len(docs) < n {
			if above := mongoid.TypesAbove(last.Type); len(above) > 0 {
				more, err := find(sc, c, bson.D{{Key: "_id", Value: bson.D{{Key: "$type", Value: above}}}}, n-len(docs), idsOnly)
				if err != nil {
					return err
				}
				docs = append(docs, more...)
			}
		}
		return nil
	})
	return docs, lo, hi, err
}

// byIDs reads the documents with the given _id values (absent ones are
// simply not returned).
func (m *mongoSide) byIDs(ctx context.Context, coll string, ids []any, idsOnly bool) (docs []bson.Raw, lo, hi event.ClusterTime, err error) {
	c := m.db.Collection(coll)
	lo, hi, err = m.timed(ctx, "read "+coll+" by _id", func(sc context.Context) error {
		var err error
		docs, err = find(sc, c, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, 0, idsOnly)
		return err
	})
	return docs, lo, hi, err
}

func find(ctx context.Context, c *mongo.Collection, filter bson.D, limit int, idsOnly bool) ([]bson.Raw, error) {
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit)).SetBatchSize(int32(min(limit, 1<<20)))
	}
	if idsOnly {
		opts.SetProjection(idOnly)
	}
	cur, err := c.Find(ctx, filter, opts)
	if err != nil {
		return nil, err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var out []bson.Raw
	for cur.Next(ctx) {
		out = append(out, append(bson.Raw(nil), cur.Current...))
	}
	return out, cur.Err()
}

// keyIDs returns the _id values to find the document of a key by: the
// value the key names (event.ParseKey, the inverse of event.KeyString:
// keys are typed, so that is one value), or, for a key that names none
// (written before keys were typed, or by hand), that string and what it
// could otherwise spell (an ObjectId, Extended JSON).
func keyIDs(key string) []any {
	if v, err := event.ParseKey(key); err == nil {
		return []any{v}
	}
	out := []any{key}
	if oid, err := bson.ObjectIDFromHex(key); err == nil && len(key) == 24 && strings.ToLower(key) == key {
		out = append(out, oid)
	}
	var wrapped struct {
		V bson.RawValue `bson:"v"`
	}
	if err := bson.UnmarshalExtJSON([]byte(`{"v":`+key+`}`), true, &wrapped); err == nil && wrapped.V.Type != bson.TypeString {
		out = append(out, wrapped.V)
	}
	return out
}

// errOplog marks an oplog that cannot be read (no privilege, not a
// replica set): live-traffic corrections are then unavailable.
var errOplog = errors.New("oplog unreadable")

// oplogOp is one change of the oplog (transactions' applyOps expanded).
type oplogOp struct {
	ts event.ClusterTime
	op string // i, u, d
	ns string
}

// oplogChanges returns the oplog's changes to the namespaces with a
// cluster time in (from, to], oldest first; limit > 0 stops after that
// many oplog entries.
func (m *mongoSide) oplogChanges(ctx context.Context, nss []string, from, to event.ClusterTime, limit int) ([]oplogOp, error) {
	if to.Compare(from) <= 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	want := map[string]bool{}
	for _, ns := range nss {
		want[ns] = true
	}
	filter, opts := oplogQuery(nss, from, to, limit)
	cur, err := m.client.Database("local").Collection("oplog.rs").Find(ctx, filter, opts)
	if err != nil {
		return nil, m.oplogErr(err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var out []oplogOp
	// A transaction over 16 MB is a chain of applyOps entries with
	// partialTxn: true ending with the commit entry (same lsid and
	// txnNumber); its writes take effect at the commit's time, so the
	// partial entries' operations wait for it. See the transaction
	// entries in pkg/mongotest/applyops.go and the server's
	// TransactionOperations::getApplyOpsInfo. Partial entries older than
	// from, whose commit is in range, are not read: the caller's window
	// then misses those operations (the entries of a chain are consecutive
	// optimes, so this needs from to fall inside one commit).
	partial := map[string][]oplogOp{}
	for cur.Next(ctx) {
		doc := cur.Current
		t, i, _ := doc.Lookup("ts").TimestampOK()
		ts := event.ClusterTime{T: t, I: i}
		op, _ := doc.Lookup("op").StringValueOK()
		ns, _ := doc.Lookup("ns").StringValueOK()
		if want[ns] {
			out = append(out, oplogOp{ts: ts, op: op, ns: ns})
			continue
		}
		txn, isPartial, ops, ok := applyOpsOf(doc, ts, want)
		if !ok {
			continue
		}
		if isPartial {
			partial[txn] = append(partial[txn], ops...)
			continue
		}
		for _, op := range partial[txn] {
			op.ts = ts
			out = append(out, op)
		}
		delete(partial, txn)
		out = append(out, ops...)
	}
	if err := cur.Err(); err != nil {
		return nil, m.oplogErr(err)
	}
	return out, nil
}

// oplogQuery selects the oplog entries in (from, to] that touch the
// namespaces directly or inside a transaction's applyOps, projected to
// what oplogChanges reads, in the oplog's own (natural) order.
func oplogQuery(nss []string, from, to event.ClusterTime, limit int) (bson.D, *options.FindOptionsBuilder) {
	in := bson.A{}
	for _, ns := range nss {
		in = append(in, ns)
	}
	filter := bson.D{
		{Key: "ts", Value: bson.D{{Key: "$gt", Value: from.Timestamp()}, {Key: "$lte", Value: to.Timestamp()}}},
		{Key: "$or", Value: bson.A{
			bson.D{{Key: "ns", Value: bson.D{{Key: "$in", Value: in}}}},
			bson.D{{Key: "o.applyOps.ns", Value: bson.D{{Key: "$in", Value: in}}}},
		}},
	}
	opts := options.Find().SetSort(bson.D{{Key: "$natural", Value: 1}}).
		SetProjection(bson.D{{Key: "ts", Value: 1}, {Key: "op", Value: 1}, {Key: "ns", Value: 1}, {Key: "o.applyOps.op", Value: 1}, {Key: "o.applyOps.ns", Value: 1},
			{Key: "o.partialTxn", Value: 1}, {Key: "lsid.id", Value: 1}, {Key: "txnNumber", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	return filter, opts
}

// applyOpsOf expands a transaction's applyOps entry into its operations on
// the wanted namespaces, stamped with the entry's time. txn names the
// transaction (lsid and txnNumber) so that a partial entry's operations
// can wait for its commit; ok is false when doc is no applyOps entry.
func applyOpsOf(doc bson.Raw, ts event.ClusterTime, want map[string]bool) (txn string, isPartial bool, ops []oplogOp, ok bool) {
	arr, ok := doc.Lookup("o", "applyOps").ArrayOK()
	if !ok {
		return "", false, nil, false
	}
	_, lsid, _ := doc.Lookup("lsid", "id").BinaryOK()
	txnNumber, _ := doc.Lookup("txnNumber").AsInt64OK()
	txn = fmt.Sprintf("%x/%d", lsid, txnNumber)
	isPartial, _ = doc.Lookup("o", "partialTxn").BooleanOK()
	vals, _ := arr.Values()
	for _, v := range vals {
		inner, ok := v.DocumentOK()
		if !ok {
			continue
		}
		iop, _ := inner.Lookup("op").StringValueOK()
		ins, _ := inner.Lookup("ns").StringValueOK()
		if want[ins] {
			ops = append(ops, oplogOp{ts: ts, op: iop, ns: ins})
		}
	}
	return txn, isPartial, ops, true
}

func (m *mongoSide) oplogErr(err error) error {
	if e := mongoErr("read local.oplog.rs", err); IsUnreachable(e) {
		return e
	}
	return fmt.Errorf("%w: %v", errOplog, err)
}

// lastID returns the collection's greatest _id (ok false when empty).
func (m *mongoSide) lastID(ctx context.Context, coll string) (id bson.RawValue, ok bool, err error) {
	_, _, err = m.timed(ctx, "read the last _id of "+coll, func(sc context.Context) error {
		raw, err := m.db.Collection(coll).FindOne(sc, bson.D{}, options.FindOne().
			SetSort(bson.D{{Key: "_id", Value: -1}}).SetProjection(idOnly)).Raw()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil
		}
		if err != nil {
			return err
		}
		id, ok = raw.Lookup("_id"), true
		return nil
	})
	return id, ok, err
}

// compareIDs orders two _id values as MongoDB does; ok is false when this
// code cannot tell (values of one bracket it does not compare).
func compareIDs(a, b bson.RawValue) (c int, ok bool) {
	ba, bb := mongoid.Bracket(a.Type), mongoid.Bracket(b.Type)
	if ba != bb {
		if ba < bb {
			return -1, true
		}
		return 1, true
	}
	switch a.Type {
	case bson.TypeObjectID:
		if b.Type != bson.TypeObjectID {
			return 0, false
		}
		x, y := a.ObjectID(), b.ObjectID()
		return bytes.Compare(x[:], y[:]), true
	case bson.TypeString:
		if b.Type != bson.TypeString {
			return 0, false
		}
		return strings.Compare(a.StringValue(), b.StringValue()), true
	case bson.TypeInt32, bson.TypeInt64:
		if b.Type != bson.TypeInt32 && b.Type != bson.TypeInt64 {
			return 0, false
		}
		x, y := a.AsInt64(), b.AsInt64()
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case bson.TypeDateTime:
		if b.Type != bson.TypeDateTime {
			return 0, false
		}
		x, y := a.DateTime(), b.DateTime()
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	}
	return 0, false
}
