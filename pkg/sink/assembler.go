package sink

// assembler turns items, in delivery order, into units: single events at
// once, transactions once complete (the Last event and every index before
// it have arrived). Duplicates of an event already waiting are dropped.
type assembler struct {
	ready []*unit
	open  map[string]*openTxn
	// readyItems counts items in ready units.
	readyItems int
}

type openTxn struct {
	items  map[int]*item
	lastIx int // -1 until the Last event arrives
	extra  []*item
}

func newAssembler() *assembler { return &assembler{open: map[string]*openTxn{}} }

// add takes one decoded item.
func (a *assembler) add(it *item) {
	txn := it.ev.Source.Txn
	if txn == nil {
		a.ready = append(a.ready, &unit{items: []*item{it}})
		a.readyItems++
		return
	}
	id := txn.ID()
	ot, ok := a.open[id]
	if !ok {
		ot = &openTxn{items: map[int]*item{}, lastIx: -1}
		a.open[id] = ot
	}
	if _, dup := ot.items[txn.Index]; dup {
		// A redelivery or a re-published copy: acknowledge it with the
		// unit, apply it once.
		ot.extra = append(ot.extra, it)
		return
	}
	ot.items[txn.Index] = it
	if txn.Last {
		ot.lastIx = txn.Index
	}
	if ot.lastIx >= 0 && len(ot.items) == ot.lastIx+1 {
		u := &unit{txnID: id, items: make([]*item, 0, len(ot.items))}
		for i := 0; i <= ot.lastIx; i++ {
			u.items = append(u.items, ot.items[i])
		}
		for _, x := range ot.extra {
			x.noop = true
			u.items = append(u.items, x)
		}
		delete(a.open, id)
		a.ready = append(a.ready, u)
		a.readyItems += len(u.items)
	}
}

// take removes and returns the ready units.
func (a *assembler) take() []*unit {
	out := a.ready
	a.ready, a.readyItems = nil, 0
	return out
}

// minOpenSeq is the lowest stream sequence held in an incomplete
// transaction (0 when none).
func (a *assembler) minOpenSeq() uint64 {
	var m uint64
	for _, ot := range a.open {
		for _, it := range ot.items {
			if m == 0 || it.seq < m {
				m = it.seq
			}
		}
	}
	return m
}
