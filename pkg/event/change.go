package event

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ErrNotDataChange is returned by FromChange for change events that do not
// describe a document (drop, rename, dropDatabase, invalidate, ...). The
// caller decides how loud to be about them.
var ErrNotDataChange = errors.New("not a document change")

// ChangeTxn is the transaction identity read from a change event, before
// the tailer numbers its events.
type ChangeTxn struct {
	LSID   string
	Number int64
}

// FromChange converts one change-stream event document into an envelope.
// The returned ChangeTxn is non-nil for events of a multi-document
// transaction; the caller sets Source.Txn (index and last) because only it
// sees the sequence of events.
func FromChange(raw bson.Raw) (*Event, *ChangeTxn, error) {
	// The envelope aliases the change document's bytes: take a private
	// copy, the driver reuses its buffers.
	raw = append(bson.Raw(nil), raw...)
	var f changeFields
	if err := f.read(raw); err != nil {
		return nil, nil, err
	}
	opType, ok := f.opType.StringValueOK()
	if !ok {
		return nil, nil, fmt.Errorf("%w: change event without operationType", ErrMalformed)
	}
	ev := &Event{V: Version, Op: Op(opType)}
	switch ev.Op {
	case OpInsert, OpUpdate, OpReplace, OpDelete:
	default:
		return nil, nil, fmt.Errorf("%w: operationType %q", ErrNotDataChange, opType)
	}

	tokenVal := f.id
	if tokenVal.Type != bson.TypeEmbeddedDocument {
		return nil, nil, fmt.Errorf("%w: change event without resume token _id", ErrMalformed)
	}
	ev.Token = tokenVal.Document()
	ev.ID = TokenID(ev.Token)
	if err := f.source(ev); err != nil {
		return nil, nil, err
	}

	key, ok := f.documentKey.DocumentOK()
	if !ok {
		return nil, nil, fmt.Errorf("%w: event %s: no documentKey", ErrMalformed, ev.ID)
	}
	ev.Key = key
	ev.Doc, _ = f.fullDocument.DocumentOK()
	ev.Pre, _ = f.pre.DocumentOK()
	if ud, ok := f.updateDescription.DocumentOK(); ok {
		ev.Update = readUpdateDescription(ud)
	}
	if ev.Op != OpDelete && ev.Op != OpUpdate && len(ev.Doc) == 0 {
		return nil, nil, fmt.Errorf("%w: event %s: %s without fullDocument", ErrMalformed, ev.ID, ev.Op)
	}
	txn, err := f.txn(ev.ID)
	if err != nil {
		return nil, nil, err
	}
	return ev, txn, nil
}

// changeFields are the top-level fields of a change event FromChange
// reads, found in one pass (a change event has a dozen; a Lookup per
// field would scan it a dozen times).
type changeFields struct {
	id, opType, ns, clusterTime, wallTime, documentKey, fullDocument,
	pre, updateDescription, txnNumber, lsid bson.RawValue
}

func (f *changeFields) read(raw bson.Raw) error {
	elems, err := raw.Elements()
	if err != nil {
		return fmt.Errorf("%w: change event: %v", ErrMalformed, err)
	}
	for _, e := range elems {
		switch e.Key() {
		case "_id":
			f.id = e.Value()
		case "operationType":
			f.opType = e.Value()
		case "ns":
			f.ns = e.Value()
		case "clusterTime":
			f.clusterTime = e.Value()
		case "wallTime":
			f.wallTime = e.Value()
		case "documentKey":
			f.documentKey = e.Value()
		case "fullDocument":
			f.fullDocument = e.Value()
		case "fullDocumentBeforeChange":
			f.pre = e.Value()
		case "updateDescription":
			f.updateDescription = e.Value()
		case "txnNumber":
			f.txnNumber = e.Value()
		case "lsid":
			f.lsid = e.Value()
		}
	}
	return nil
}

// source fills ev.Source from the namespace and the times; a change
// without a namespace or a cluster time cannot be ordered or routed, so
// it is malformed (ev.ID names it).
func (f *changeFields) source(ev *Event) error {
	ns, ok := f.ns.DocumentOK()
	if !ok {
		return fmt.Errorf("%w: event %s: no ns", ErrMalformed, ev.ID)
	}
	ev.Source.DB, _ = ns.Lookup("db").StringValueOK()
	ev.Source.Coll, _ = ns.Lookup("coll").StringValueOK()
	t, i, ok := f.clusterTime.TimestampOK()
	if !ok {
		return fmt.Errorf("%w: event %s: no clusterTime", ErrMalformed, ev.ID)
	}
	ev.Source.ClusterTime = ClusterTime{T: t, I: i}
	if wt, ok := f.wallTime.TimeOK(); ok {
		ev.Source.WallTime = wt.UTC()
	}
	return nil
}

// readUpdateDescription keeps an update's truncated arrays only when
// there are some, so an update without them carries no empty field.
func readUpdateDescription(ud bson.Raw) *UpdateDescription {
	u := &UpdateDescription{}
	u.Updated, _ = ud.Lookup("updatedFields").DocumentOK()
	if removed, ok := ud.Lookup("removedFields").ArrayOK(); ok {
		vals, _ := removed.Values()
		for _, v := range vals {
			if s, ok := v.StringValueOK(); ok {
				u.Removed = append(u.Removed, s)
			}
		}
	}
	if tr, ok := ud.Lookup("truncatedArrays").ArrayOK(); ok {
		if vals, _ := tr.Values(); len(vals) > 0 {
			u.Truncated = bson.Raw(tr)
		}
	}
	return u
}

// txn reads the transaction identity of event id (nil outside a
// transaction); a txnNumber without its session id cannot be told apart
// from another session's transaction, so it is malformed.
func (f *changeFields) txn(id string) (*ChangeTxn, error) {
	n, ok := f.txnNumber.AsInt64OK()
	if !ok {
		return nil, nil
	}
	lsid, ok := f.lsid.DocumentOK()
	if !ok {
		return nil, fmt.Errorf("%w: event %s: txnNumber without lsid", ErrMalformed, id)
	}
	_, data, ok := lsid.Lookup("id").BinaryOK()
	if !ok {
		return nil, fmt.Errorf("%w: event %s: lsid without id", ErrMalformed, id)
	}
	return &ChangeTxn{LSID: hex.EncodeToString(data), Number: n}, nil
}

// TokenID derives an event id from a resume token: "rt:" and the token's
// _data string (unique per change in a replica set), or a hash of the
// whole token when it has another shape.
func TokenID(token bson.Raw) string {
	if data, ok := token.Lookup("_data").StringValueOK(); ok && data != "" {
		return "rt:" + data
	}
	sum := sha256.Sum256(token)
	return "rth:" + hex.EncodeToString(sum[:16])
}
