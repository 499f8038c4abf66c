package sink

import "time"

// assembler turns items, in delivery order, into units: single events at
// once, transactions once complete (the Last event and every index before
// it have arrived). Duplicates of an event already held are dropped.
//
// Parts of an open transaction can be spilled: set aside in
// cdc.deferred_events (by the apply transaction that moves the position
// past them) and forgotten here but for their index. A transaction larger
// than the consumer's in-flight limit, or one whose last event comes much
// later, then never holds the position or the consumer back. When such a
// transaction completes, its unit says so (spilled) and the sink loads the
// spilled parts before applying it whole.
type assembler struct {
	ready []*unit
	open  map[string]*openTxn
	// readyItems counts items in ready units; memItems counts items of
	// open transactions held in memory (not spilled).
	readyItems, memItems int
	now                  func() time.Time
}

type openTxn struct {
	items map[int]*item
	// spilled maps the index of each spilled part to its stream sequence.
	spilled map[int]uint64
	lastIx  int // -1 until the Last event arrives
	extra   []*item
	// firstSeen is when the first part arrived (or was first deferred).
	firstSeen time.Time
}

func (ot *openTxn) has(ix int) bool {
	if _, ok := ot.items[ix]; ok {
		return true
	}
	_, ok := ot.spilled[ix]
	return ok
}

func newAssembler() *assembler {
	return &assembler{open: map[string]*openTxn{}, now: time.Now}
}

func (a *assembler) txn(id string) *openTxn {
	ot, ok := a.open[id]
	if !ok {
		ot = &openTxn{items: map[int]*item{}, spilled: map[int]uint64{}, lastIx: -1, firstSeen: a.now()}
		a.open[id] = ot
	}
	return ot
}

// add takes one decoded item.
func (a *assembler) add(it *item) {
	txn := it.ev.Source.Txn
	if txn == nil {
		a.ready = append(a.ready, &unit{items: []*item{it}})
		a.readyItems++
		return
	}
	id := txn.ID()
	ot := a.txn(id)
	if ot.has(txn.Index) {
		// A redelivery or a re-published copy: acknowledge it with the
		// unit, apply it once.
		it.noop = true
		ot.extra = append(ot.extra, it)
		return
	}
	ot.items[txn.Index] = it
	a.memItems++
	if txn.Last {
		ot.lastIx = txn.Index
	}
	a.release(id, ot)
}

// addSpilled records a part already set aside in cdc.deferred_events (a
// sink starting with deferred transaction parts).
func (a *assembler) addSpilled(txnID string, ix int, seq uint64, last bool, firstSeen time.Time) {
	ot := a.txn(txnID)
	if ot.has(ix) {
		return
	}
	ot.spilled[ix] = seq
	if last {
		ot.lastIx = ix
	}
	if firstSeen.Before(ot.firstSeen) {
		ot.firstSeen = firstSeen
	}
	a.release(txnID, ot)
}

func (a *assembler) release(id string, ot *openTxn) {
	if ot.lastIx < 0 || len(ot.items)+len(ot.spilled) != ot.lastIx+1 {
		return
	}
	u := &unit{txnID: id, items: make([]*item, 0, len(ot.items)+len(ot.extra)), spilled: len(ot.spilled) > 0}
	for i := 0; i <= ot.lastIx; i++ {
		if it, ok := ot.items[i]; ok {
			u.items = append(u.items, it)
		}
	}
	u.items = append(u.items, ot.extra...)
	a.memItems -= len(ot.items)
	delete(a.open, id)
	a.ready = append(a.ready, u)
	a.readyItems += len(u.items)
}

// take removes and returns the ready units.
func (a *assembler) take() []*unit {
	out := a.ready
	a.ready, a.readyItems = nil, 0
	return out
}

// minOpenSeq is the lowest stream sequence held in memory in an
// incomplete transaction (0 when none). Spilled parts do not count: they
// are resolved as far as the position is concerned.
func (a *assembler) minOpenSeq() uint64 {
	var m uint64
	for _, ot := range a.open {
		for _, it := range ot.items {
			if m == 0 || it.seq < m {
				m = it.seq
			}
		}
		for _, it := range ot.extra {
			if m == 0 || it.seq < m {
				m = it.seq
			}
		}
	}
	return m
}

// oldestMem is when the oldest transaction with parts in memory started
// (zero when none).
func (a *assembler) oldestMem() time.Time {
	var t time.Time
	for _, ot := range a.open {
		if len(ot.items)+len(ot.extra) > 0 && (t.IsZero() || ot.firstSeen.Before(t)) {
			t = ot.firstSeen
		}
	}
	return t
}

// spill removes the in-memory parts of every open transaction and
// returns them (duplicates included, to be acknowledged); the assembler
// keeps their indexes. The caller must set the parts aside durably before
// acknowledging them.
func (a *assembler) spill() []*item {
	var out []*item
	for _, ot := range a.open {
		for ix, it := range ot.items {
			ot.spilled[ix] = it.seq
			out = append(out, it)
		}
		out = append(out, ot.extra...)
		a.memItems -= len(ot.items)
		ot.items, ot.extra = map[int]*item{}, nil
	}
	return out
}

// expired removes and returns the open transactions that started before
// cutoff, with the parts held in memory (their spilled parts are in
// cdc.deferred_events).
func (a *assembler) expired(cutoff time.Time) map[string]*openTxn {
	out := map[string]*openTxn{}
	for id, ot := range a.open {
		if ot.firstSeen.Before(cutoff) {
			out[id] = ot
			a.memItems -= len(ot.items)
			delete(a.open, id)
		}
	}
	return out
}
