package benchkit

import (
	"fmt"
	"sort"

	"github.com/cespare/xxhash/v2"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/transform"
)

// Captured is one message as the tailer published it: the payload and
// headers the raw publish ceiling sends again, byte for byte.
type Captured struct {
	Subject string
	Header  nats.Header
	Data    []byte
}

// RawData is a captured prefix of the stream with, for every event, the
// rows it maps to, computed before any ceiling is timed: the raw writers
// pay for JetStream, decoding the envelope and Postgres, never for the
// transform.
type RawData struct {
	Events []RawEvent
	// Tables are the parent tables in reference order, with their
	// columns and child tables.
	Tables []RawTable
	// Partitions is the number of partitions of the raw pipeline;
	// PartitionCounts the events of each, and Prologue the events before
	// them (the sellers, applied first by one applier).
	Partitions      int
	PartitionCounts []int
	Prologue        int
	// Live is the number of rows each table (Tables order) holds once the
	// whole prefix is applied.
	Live []int
	// PayloadBytes sums the captured payloads per collection, Messages
	// counts them.
	PayloadBytes map[string]int64
	Messages     map[string]int
}

// RawTable is one mapping's parent table and its child tables.
type RawTable struct {
	Name     string
	Columns  []string // the id first
	Children []RawChild
}

// RawChild is a child table; Columns start with the parent column.
type RawChild struct {
	Name    string
	Columns []string
}

// RawEvent is one captured event and what it writes.
type RawEvent struct {
	Msg Captured
	// ID is the envelope's id, checked against the decoded message.
	ID string
	// Subject is where the raw pipeline publishes it
	// (raw.<partition|pre>.<collection>).
	Subject string
	// Partition is the raw pipeline's partition (-1: the prologue).
	Partition int
	Write     RowWrite
}

// RowWrite is an event's effect on its table.
type RowWrite struct {
	Table int // index in RawData.Tables
	ID    uuid.UUID
	// Delete: the document was deleted. New: this is the document's first
	// event in the capture (its insert).
	Delete, New bool
	// Values are the row's, aligned with RawTable.Columns (id first).
	Values []any
	// Children are the child rows, per RawTable.Children entry, each row
	// aligned with RawChild.Columns (parent id first).
	Children [][][]any
}

// rawNamespace derives the raw writers' ids: a document's uuid is
// UUIDv5(rawNamespace, "<collection>/<legacy id>"), so references resolve
// without id_map and every foreign key holds.
var rawNamespace = uuid.MustParse("6f1c2b1e-3a4d-4c8e-9b7a-0d5e8f2a1c3b")

// RawID is the raw writers' uuid of a document.
func RawID(coll, legacyID string) uuid.UUID {
	return uuid.NewSHA1(rawNamespace, []byte(coll+"/"+legacyID))
}

// ownerField is the field holding the user a document belongs to, the
// raw pipeline's partition key (users: the document itself). Every other
// reference of the workload points at a seller, written in the prologue.
var ownerField = map[string]string{
	CollPurchaseRequests: "buyerId",
	CollPayments:         "buyerId",
	CollFundsLedger:      "userId",
}

// PrepareRaw decodes the captured messages (in stream order), maps each
// event's document with set (references resolved to RawID) and assigns
// partitions. prologue is the number of leading events that must be the
// sellers' inserts (Workload.PrologueEvents).
func PrepareRaw(set *transform.Set, msgs []Captured, partitions, prologue int) (*RawData, error) {
	if partitions <= 0 {
		partitions = 1
	}
	p, err := newRawPrep(set, partitions, prologue)
	if err != nil {
		return nil, err
	}
	p.d.Events = make([]RawEvent, 0, len(msgs))
	for i, msg := range msgs {
		re, err := p.prepare(i, msg)
		if err != nil {
			return nil, err
		}
		p.d.Events = append(p.d.Events, re)
	}
	return p.d, nil
}

// rawPrep is PrepareRaw's state across the messages: what it has seen of
// each document ("<collection>/<legacy id>") decides the New flag, the live
// row counts and the partition of the document's later events.
type rawPrep struct {
	set        *transform.Set
	d          *RawData
	tableOf    map[string]int // collection -> index in d.Tables
	seen       map[string]bool
	alive      map[string]bool
	owner      map[string]string // document -> legacy id of its owner
	partitions int
	prologue   int
}

// newRawPrep lays out the tables (Collections order) from set's mappings.
func newRawPrep(set *transform.Set, partitions, prologue int) (*rawPrep, error) {
	d := &RawData{Partitions: partitions, PartitionCounts: make([]int, partitions), Prologue: prologue,
		PayloadBytes: map[string]int64{}, Messages: map[string]int{}}
	tableOf := map[string]int{}
	for _, c := range Collections {
		m, ok := set.Get(c)
		if !ok {
			return nil, fmt.Errorf("no transform for %s: %w", c, ErrCapture)
		}
		t := RawTable{Name: m.Table, Columns: m.ColumnNames(), Children: rawChildren(m)}
		tableOf[c] = len(d.Tables)
		d.Tables = append(d.Tables, t)
	}
	d.Live = make([]int, len(d.Tables))
	return &rawPrep{set: set, d: d, tableOf: tableOf, seen: map[string]bool{}, alive: map[string]bool{},
		owner: map[string]string{}, partitions: partitions, prologue: prologue}, nil
}

// prepare turns message i into its RawEvent.
func (p *rawPrep) prepare(i int, msg Captured) (RawEvent, error) {
	ev, err := event.Unmarshal(msg.Data)
	if err != nil {
		return RawEvent{}, fmt.Errorf("message %d: %w", i, err)
	}
	coll := ev.Source.Coll
	ti, ok := p.tableOf[coll]
	if !ok {
		return RawEvent{}, fmt.Errorf("message %d: collection %q is not in the workload: %w", i, coll, ErrCapture)
	}
	m, _ := p.set.Get(coll)
	oid, ok := ev.Key.Lookup("_id").ObjectIDOK()
	if !ok {
		return RawEvent{}, fmt.Errorf("message %d: _id is not an ObjectId: %w", i, ErrCapture)
	}
	legacy := oid.Hex()
	docKey := coll + "/" + legacy
	w := RowWrite{Table: ti, ID: RawID(coll, legacy), New: !p.seen[docKey]}
	p.seen[docKey] = true
	if del := ev.Op == event.OpDelete; del == p.alive[docKey] {
		p.alive[docKey] = !del
		if del {
			p.d.Live[ti]--
		} else {
			p.d.Live[ti]++
		}
	}
	switch {
	case ev.Op == event.OpDelete:
		w.Delete = true
	case ev.Doc == nil:
		return RawEvent{}, fmt.Errorf("message %d: %s event of %s without a document: %w", i, ev.Op, docKey, ErrCapture)
	default:
		if err := rawRow(m, ev.Doc, &w); err != nil {
			return RawEvent{}, fmt.Errorf("message %d (%s): %w", i, docKey, err)
		}
	}
	who, err := p.ownerOf(i, ev, docKey, legacy)
	if err != nil {
		return RawEvent{}, err
	}
	re := RawEvent{Msg: rawCopy(msg), ID: ev.ID, Write: w}
	if i < p.prologue {
		if coll != CollUsers || ev.Op != event.OpInsert {
			return RawEvent{}, fmt.Errorf("message %d is a %s of %s, inside the sellers' prologue of %d: %w", i, ev.Op, coll, p.prologue, ErrCapture)
		}
		re.Partition, re.Subject = -1, "raw.pre."+coll
	} else {
		re.Partition = int(xxhash.Sum64String(who) % uint64(p.partitions))
		re.Subject = fmt.Sprintf("raw.p%d.%s", re.Partition, coll)
		p.d.PartitionCounts[re.Partition]++
	}
	p.d.PayloadBytes[coll] += int64(len(msg.Data))
	p.d.Messages[coll]++
	return re, nil
}

// ownerOf is the partition key of the document's events, fixed by its
// first event: the owner field's user (ownerField), else the document
// itself.
func (p *rawPrep) ownerOf(i int, ev *event.Event, docKey, legacy string) (string, error) {
	if who, ok := p.owner[docKey]; ok {
		return who, nil
	}
	who := legacy
	if f := ownerField[ev.Source.Coll]; f != "" && ev.Doc != nil {
		o, ok := ev.Doc.Lookup(f).ObjectIDOK()
		if !ok {
			return "", fmt.Errorf("message %d: %s has no ObjectId %s: %w", i, docKey, f, ErrCapture)
		}
		who = o.Hex()
	}
	p.owner[docKey] = who
	return who, nil
}

// rawCopy is msg as the raw pipeline publishes it: a message that names
// the tailer's stream in its expected-stream header names RawStream
// instead (on a copy of the header, the capture stays as it was).
func rawCopy(msg Captured) Captured {
	if msg.Header.Get(jetstream.ExpectedStreamHeader) != "" {
		h := nats.Header{}
		for k, v := range msg.Header {
			h[k] = v
		}
		h.Set(jetstream.ExpectedStreamHeader, RawStream)
		msg.Header = h
	}
	return msg
}

// rawChildren lists the mapping's child tables with their columns, the
// parent column first.
func rawChildren(m *transform.Mapping) []RawChild {
	out := make([]RawChild, 0, len(m.Children))
	for i := range m.Children {
		ch := &m.Children[i]
		out = append(out, RawChild{Name: ch.Table, Columns: append([]string{ch.ParentColumn}, ch.ColumnNames()...)})
	}
	return out
}

// rawRow fills w with the row and child rows of doc, every reference
// resolved to RawID.
func rawRow(m *transform.Mapping, doc bson.Raw, w *RowWrite) error {
	row, err := m.Row(doc)
	if err != nil {
		return fmt.Errorf("transform: %w", err)
	}
	w.Values = make([]any, 0, len(row.Values)+1)
	w.Values = append(w.Values, w.ID)
	w.Values = append(w.Values, row.Values...)
	for _, r := range row.Refs {
		w.Values[r.Col+1] = RawID(r.Collection, r.LegacyID)
	}
	w.Children = make([][][]any, len(row.Children))
	for i, cs := range row.Children {
		rows := make([][]any, 0, len(cs.Rows))
		for _, cr := range cs.Rows {
			vals := make([]any, 0, len(cr.Values)+1)
			vals = append(vals, w.ID)
			vals = append(vals, cr.Values...)
			for _, r := range cr.Refs {
				vals[r.Col+1] = RawID(r.Collection, r.LegacyID)
			}
			rows = append(rows, vals)
		}
		w.Children[i] = rows
	}
	return nil
}

// MergeByPosition orders messages captured from several streams (lanes)
// by their place in MongoDB's history (cluster time, then index in the
// transaction), as one stream would hold them, and keeps the first limit.
func MergeByPosition(msgs []Captured, limit int) ([]Captured, error) {
	type keyed struct {
		pos event.Position
		msg Captured
	}
	ks := make([]keyed, len(msgs))
	for i, m := range msgs {
		ev, err := event.Unmarshal(m.Data)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		ks[i] = keyed{ev.Position(), m}
	}
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].pos.Compare(ks[j].pos) < 0 })
	if limit > 0 && len(ks) > limit {
		ks = ks[:limit]
	}
	out := make([]Captured, len(ks))
	for i, k := range ks {
		out[i] = k.msg
	}
	return out, nil
}
