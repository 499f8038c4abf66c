package sink

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/state"
	"github.com/amanat/cdc/pkg/transform"
)

// DeadLetter is one event the batch dead-lettered.
type DeadLetter struct {
	EventID   string
	DB, Coll  string
	DocKey    string
	Class     state.Class
	Reason    string
	StreamSeq uint64
	Envelope  []byte
}

// DeadLetters lists what the batch dead-lettered.
func (r *Result) DeadLetters() []DeadLetter {
	out := make([]DeadLetter, 0, len(r.dead))
	for _, it := range r.dead {
		cls, reason := classify(it.reject)
		out = append(out, DeadLetter{EventID: it.ev.ID, DB: it.ev.Source.DB, Coll: it.ev.Source.Coll, DocKey: it.docKey,
			Class: cls, Reason: reason, StreamSeq: it.seq, Envelope: it.raw})
	}
	return out
}

// classify names a dead letter's class and reason, by the error's type.
func classify(err error) (state.Class, string) {
	if err == nil {
		return state.ClassPoison, "unknown"
	}
	var pe *parkedError
	if errors.As(err, &pe) {
		return state.ClassParked, pe.Error()
	}
	var ie *incompleteError
	if errors.As(err, &ie) {
		return state.ClassIncomplete, ie.Error()
	}
	var ve *violationError
	if errors.As(err, &ve) {
		return state.ClassViolation, ve.Error()
	}
	if rej, ok := transform.AsRejection(err); ok {
		return state.ClassRejected, rej.Reason
	}
	return state.ClassPoison, err.Error()
}

// parkedError marks an event held behind an earlier open dead letter of
// its document: applying it over the gap could leave a state that never
// existed in Mongo.
type parkedError struct {
	coll, key string
}

func (e *parkedError) Error() string {
	return fmt.Sprintf("parked: document %s %s has an earlier open dead letter; this event waits for `cdc dlq retry` or `cdc dlq drop`", e.coll, e.key)
}

// violationError is an event that breaks an invariant of its mapping (an
// update or delete of an append-only document).
type violationError struct{ msg string }

func (e *violationError) Error() string { return e.msg }

// divergenceError is an append-only row found in Postgres with other
// values than its document's event carries (appendOnlySQL). Unlike the
// violations decided from the event alone it is found by the write, so it
// is poison there (Classify): the apply path isolates the unit and
// dead-letters it with class violation.
type divergenceError struct{ violationError }

// Unwrap lets classify find the violation.
func (e *divergenceError) Unwrap() error { return &e.violationError }

// incompleteError marks the events of a Mongo transaction whose other
// events did not all arrive within the sink's transaction timeout.
type incompleteError struct {
	txnID   string
	have    []int
	lastIx  int // -1: the last event never arrived
	waited  string
	missing []int
}

func (e *incompleteError) Error() string {
	last := "its last event never arrived"
	if e.lastIx >= 0 {
		last = fmt.Sprintf("indexes %v of 0..%d are missing", e.missing, e.lastIx)
	}
	return fmt.Sprintf("incomplete transaction %s: %d events arrived (indexes %v) and %s after %s; "+
		"replay the transaction's cluster time from the oplog (cdc replay oplog), then `cdc dlq retry` applies it whole",
		e.txnID, len(e.have), e.have, last, e.waited)
}

func newIncomplete(txnID string, have []int, lastIx int, waited string) *incompleteError {
	sort.Ints(have)
	e := &incompleteError{txnID: txnID, have: have, lastIx: lastIx, waited: waited}
	if lastIx >= 0 {
		got := map[int]bool{}
		for _, ix := range have {
			got[ix] = true
		}
		for i := 0; i <= lastIx; i++ {
			if !got[i] {
				e.missing = append(e.missing, i)
			}
		}
	}
	return e
}

// heldDocs returns, for the documents of units that have open dead
// letters (other than those of the events being retried), the source
// position of the earliest one. Collections listed unparked are left out.
func (a *Applier) heldDocs(ctx context.Context, tx pgx.Tx, units []*unit, retrying []string) (map[docRef]event.Position, error) {
	var refs []state.DocRef
	for _, u := range units {
		for _, it := range u.items {
			if it.mapping != nil && !a.unparked[it.mapping.Collection] {
				refs = append(refs, state.DocRef{Collection: it.mapping.Collection, Key: it.docKey})
			}
		}
	}
	got, err := state.OpenDeadLetterPositions(ctx, tx, refs, retrying)
	if err != nil {
		return nil, err
	}
	held := make(map[docRef]event.Position, len(got))
	for r, p := range got {
		held[docRef{r.Collection, r.Key}] = p
	}
	return held, nil
}

// holdUnit records that u's documents have a dead letter from u's
// positions on.
func holdUnit(held map[docRef]event.Position, u *unit) {
	for _, it := range u.items {
		if it.mapping == nil || it.noop {
			continue
		}
		k := docRef{it.mapping.Collection, it.docKey}
		if p, ok := held[k]; !ok || it.ev.Position().Compare(p) < 0 {
			held[k] = it.ev.Position()
		}
	}
}

// park marks u parked if it touches a document held from an earlier
// position (and its collection parks), holding every document of u from
// then on. An event is never parked behind a later event of its own
// document, nor behind itself.
func (a *Applier) park(held map[docRef]event.Position, u *unit) bool {
	for _, it := range u.items {
		if it.mapping == nil || it.noop || a.unparked[it.mapping.Collection] {
			continue
		}
		if p, ok := held[docRef{it.mapping.Collection, it.docKey}]; ok && p.Compare(it.ev.Position()) < 0 {
			it.reject = &parkedError{coll: it.mapping.Collection, key: it.docKey}
			holdUnit(held, u)
			return true
		}
	}
	return false
}

// deadLetters records every event of the units in bad with its reason
// and its sequence in stream, the applier's stream: with sink lanes each
// lane's stream numbers its messages itself, so a sequence alone does not
// say which message it was. stream "" (a dead-letter retry, which reads
// no stream) records none; an entry recorded again keeps the stream and
// sequence it first had (state.RecordDeadLetters).
func deadLetters(ctx context.Context, tx pgx.Tx, stream string, bad []*unit) error {
	var dls []state.NewDeadLetter
	for _, u := range bad {
		cause := u.rejected()
		for _, it := range u.items {
			if it.noop && it.reject == nil {
				continue // a duplicate: its original is recorded
			}
			err := it.reject
			prefix := ""
			if err == nil {
				err, prefix = cause, "another event of its Mongo transaction was dead-lettered: "
			}
			cls, reason := classify(err)
			var field, value string
			if rej, ok := transform.AsRejection(err); ok {
				field, value = rej.Field, rej.Value
			}
			evJSON := storedEvent(it.raw)
			coll := it.ev.Source.Coll
			if coll == "" {
				coll = "?"
			}
			dls = append(dls, state.NewDeadLetter{EventID: it.ev.ID, Collection: coll, DocKey: it.docKey, StreamSeq: it.seq, Stream: stream,
				Class: cls, Field: field, Value: value, Reason: prefix + reason, Event: evJSON,
				Txn: it.ev.Source.Txn, Position: it.ev.Position()})
		}
	}
	return state.RecordDeadLetters(ctx, tx, dls)
}

// storedEvent is how a dead-lettered envelope is kept in
// cdc.dead_letters.event (jsonb): canonical Extended JSON, so operators can
// query it; an envelope that is not even BSON as {"undecodable_hex"}; and
// one whose strings hold NUL characters, which jsonb refuses (SQLSTATE
// 22P05, "unsupported Unicode escape sequence") although BSON allows them,
// as {"bson_hex"}: the exact envelope, which cdc dlq retry re-applies.
func storedEvent(raw []byte) []byte {
	js, err := event.ExtJSON(raw)
	if err != nil {
		b, _ := json.Marshal(map[string]string{"undecodable_hex": hex.EncodeToString(raw), "error": err.Error()})
		return b
	}
	if hasEscapedNUL(js) {
		b, _ := json.Marshal(map[string]string{"bson_hex": hex.EncodeToString(raw),
			"note": "the event holds NUL characters, which jsonb cannot store: kept as its BSON envelope"})
		return b
	}
	return js
}

// hasEscapedNUL reports whether the JSON text js contains the escape
// \u0000 (a backslash that is not itself escaped, then u0000).
func hasEscapedNUL(js []byte) bool {
	for i := 0; ; {
		j := bytes.Index(js[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		at := i + j
		n := 0
		for k := at - 1; k >= 0 && js[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return true
		}
		i = at + 1
	}
}
