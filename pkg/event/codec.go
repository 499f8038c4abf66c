package event

import (
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// ContentType is the Content-Type header value of a published envelope.
const ContentType = "application/bson; cdc-event=1"

// Marshal encodes the envelope as one BSON document:
//
//	{v: int32, id: string, op: string,
//	 source: {db, coll, cluster_time: Timestamp, wall_time?: Date,
//	          txn?: {lsid: string, number: int64, index: int32, last: bool}},
//	 key: doc, doc?: doc, pre?: doc,
//	 update?: {updated?: doc, removed?: [string], truncated?: array},
//	 token?: doc, oversize?: int64}
//
// Embedded documents are the source's BSON bytes, unchanged: every type
// (ObjectId, Decimal128, dates, int64) survives exactly.
func (e *Event) Marshal() ([]byte, error) {
	size := 256 + len(e.Key) + len(e.Doc) + len(e.Pre) + len(e.Token)
	if e.Update != nil {
		size += len(e.Update.Updated) + len(e.Update.Truncated)
	}
	idx, dst := bsoncore.AppendDocumentStart(make([]byte, 0, size))
	dst = bsoncore.AppendInt32Element(dst, "v", int32(e.V))
	dst = bsoncore.AppendStringElement(dst, "id", e.ID)
	dst = bsoncore.AppendStringElement(dst, "op", string(e.Op))

	sidx, dst := bsoncore.AppendDocumentElementStart(dst, "source")
	dst = bsoncore.AppendStringElement(dst, "db", e.Source.DB)
	dst = bsoncore.AppendStringElement(dst, "coll", e.Source.Coll)
	dst = bsoncore.AppendTimestampElement(dst, "cluster_time", e.Source.ClusterTime.T, e.Source.ClusterTime.I)
	if !e.Source.WallTime.IsZero() {
		dst = bsoncore.AppendDateTimeElement(dst, "wall_time", e.Source.WallTime.UnixMilli())
	}
	if t := e.Source.Txn; t != nil {
		tidx, d := bsoncore.AppendDocumentElementStart(dst, "txn")
		d = bsoncore.AppendStringElement(d, "lsid", t.LSID)
		d = bsoncore.AppendInt64Element(d, "number", t.Number)
		d = bsoncore.AppendInt32Element(d, "index", int32(t.Index))
		d = bsoncore.AppendBooleanElement(d, "last", t.Last)
		dst, _ = bsoncore.AppendDocumentEnd(d, tidx)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, sidx)

	if e.Key != nil {
		dst = bsoncore.AppendDocumentElement(dst, "key", e.Key)
	}
	if e.Doc != nil {
		dst = bsoncore.AppendDocumentElement(dst, "doc", e.Doc)
	}
	if e.Pre != nil {
		dst = bsoncore.AppendDocumentElement(dst, "pre", e.Pre)
	}
	if u := e.Update; u != nil {
		uidx, d := bsoncore.AppendDocumentElementStart(dst, "update")
		if u.Updated != nil {
			d = bsoncore.AppendDocumentElement(d, "updated", u.Updated)
		}
		if len(u.Removed) > 0 {
			aidx, a := bsoncore.AppendArrayElementStart(d, "removed")
			for i, r := range u.Removed {
				a = bsoncore.AppendStringElement(a, fmt.Sprint(i), r)
			}
			d, _ = bsoncore.AppendArrayEnd(a, aidx)
		}
		if u.Truncated != nil {
			d = bsoncore.AppendArrayElement(d, "truncated", u.Truncated)
		}
		dst, _ = bsoncore.AppendDocumentEnd(d, uidx)
	}
	if e.Token != nil {
		dst = bsoncore.AppendDocumentElement(dst, "token", e.Token)
	}
	if e.Oversize > 0 {
		dst = bsoncore.AppendInt64Element(dst, "oversize", e.Oversize)
	}
	dst, err := bsoncore.AppendDocumentEnd(dst, idx)
	if err != nil {
		return nil, fmt.Errorf("event %s: marshal: %w", e.ID, err)
	}
	return dst, nil
}

// Unmarshal decodes and validates an envelope. The embedded documents
// alias data: the caller must not modify data while the Event is in use.
func Unmarshal(data []byte) (*Event, error) {
	raw := bson.Raw(data)
	if err := raw.Validate(); err != nil {
		return nil, fmt.Errorf("%w: not a BSON document: %v", ErrMalformed, err)
	}
	elems, err := raw.Elements()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var e Event
	for _, el := range elems {
		k, v := el.Key(), el.Value()
		var ok bool
		switch k {
		case "v":
			var n int32
			n, ok = v.Int32OK()
			e.V = int(n)
		case "id":
			e.ID, ok = v.StringValueOK()
		case "op":
			var s string
			s, ok = v.StringValueOK()
			e.Op = Op(s)
		case "source":
			var src bson.Raw
			if src, ok = v.DocumentOK(); ok {
				if err := decodeSource(src, &e.Source); err != nil {
					return nil, err
				}
			}
		case "key":
			e.Key, ok = v.DocumentOK()
		case "doc":
			e.Doc, ok = v.DocumentOK()
		case "pre":
			e.Pre, ok = v.DocumentOK()
		case "token":
			e.Token, ok = v.DocumentOK()
		case "oversize":
			e.Oversize, ok = v.AsInt64OK()
		case "update":
			var u bson.Raw
			if u, ok = v.DocumentOK(); ok {
				e.Update = &UpdateDescription{}
				e.Update.Updated, _ = u.Lookup("updated").DocumentOK()
				if arr, isArr := u.Lookup("truncated").ArrayOK(); isArr {
					e.Update.Truncated = bson.Raw(arr)
				}
				if arr, isArr := u.Lookup("removed").ArrayOK(); isArr {
					vals, _ := arr.Values()
					for _, rv := range vals {
						if s, isStr := rv.StringValueOK(); isStr {
							e.Update.Removed = append(e.Update.Removed, s)
						}
					}
				}
			}
		default:
			ok = true // unknown fields of a newer minor writer are ignored
		}
		if !ok {
			return nil, fmt.Errorf("%w: field %q has type %s", ErrMalformed, k, v.Type)
		}
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

func decodeSource(src bson.Raw, s *Source) error {
	var ok bool
	if s.DB, ok = src.Lookup("db").StringValueOK(); !ok {
		return fmt.Errorf("%w: source.db", ErrMalformed)
	}
	if s.Coll, ok = src.Lookup("coll").StringValueOK(); !ok {
		return fmt.Errorf("%w: source.coll", ErrMalformed)
	}
	t, i, ok := src.Lookup("cluster_time").TimestampOK()
	if !ok {
		return fmt.Errorf("%w: source.cluster_time", ErrMalformed)
	}
	s.ClusterTime = ClusterTime{T: t, I: i}
	if wt, ok := src.Lookup("wall_time").DateTimeOK(); ok {
		s.WallTime = time.UnixMilli(wt).UTC()
	}
	if tv, err := src.LookupErr("txn"); err == nil {
		txn, ok := tv.DocumentOK()
		if !ok {
			return fmt.Errorf("%w: source.txn", ErrMalformed)
		}
		s.Txn = &Txn{}
		s.Txn.LSID, _ = txn.Lookup("lsid").StringValueOK()
		s.Txn.Number, _ = txn.Lookup("number").Int64OK()
		idx, _ := txn.Lookup("index").Int32OK()
		s.Txn.Index = int(idx)
		s.Txn.Last, _ = txn.Lookup("last").BooleanOK()
		if s.Txn.LSID == "" {
			return fmt.Errorf("%w: source.txn without lsid", ErrMalformed)
		}
	}
	return nil
}

// ExtJSON renders an encoded envelope as canonical Extended JSON, for
// people (dead-letter reports, logs) and for consumers that prefer JSON.
func ExtJSON(data []byte) ([]byte, error) {
	if err := bson.Raw(data).Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return bson.MarshalExtJSON(bson.Raw(data), true, false)
}
