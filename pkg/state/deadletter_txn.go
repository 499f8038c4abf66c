package state

import (
	"fmt"
	"sort"
	"strings"
)

// The completeness check of the Mongo transactions among dead letters
// (TxnGaps), apart from deadletter_ops.go: it reads nothing, it judges the
// entries an operation selected.

// TxnPart is one entry of a Mongo transaction, as a TxnGap lists it.
type TxnPart struct {
	ID         int64  `json:"id"`
	EventID    string `json:"event_id"`
	Collection string `json:"collection"`
	DocKey     string `json:"doc_key"`
	Index      int    `json:"index"`
	Last       bool   `json:"last,omitempty"`
	Status     Status `json:"status"`
}

// TxnGap is a Mongo transaction that is not whole among a selection's
// entries: a retry must not apply part of it.
type TxnGap struct {
	TxnID string `json:"txn_id"`
	// Parts are the selection's entries of the transaction, by index.
	Parts []TxnPart `json:"parts"`
	// Closed are the transaction's entries outside the selection (dropped
	// or retried): reopening them may make it whole.
	Closed []TxnPart `json:"closed,omitempty"`
	// Last is the index of the transaction's last event, -1 when no part
	// is marked last.
	Last int `json:"last"`
	// Missing lists the indexes of 0..Last (0..the highest part when Last
	// is -1) that no part has.
	Missing []int `json:"missing"`
}

func (g TxnGap) String() string {
	var parts []string
	for _, p := range g.Parts {
		parts = append(parts, fmt.Sprintf("%d (index %d, %s %s)", p.ID, p.Index, p.Collection, p.DocKey))
	}
	var s string
	if g.Last >= 0 {
		s = fmt.Sprintf("transaction %s: entries %s; missing indexes %v of 0..%d", g.TxnID, strings.Join(parts, ", "), g.Missing, g.Last)
	} else {
		s = fmt.Sprintf("transaction %s: entries %s; no entry is its last event", g.TxnID, strings.Join(parts, ", "))
		if len(g.Missing) > 0 {
			s += fmt.Sprintf(", and indexes %v are missing", g.Missing)
		}
	}
	for _, c := range g.Closed {
		s += fmt.Sprintf("; entry %d (index %d) is %s", c.ID, c.Index, c.Status)
	}
	return s
}

func partOf(d DeadLetter) TxnPart {
	p := TxnPart{ID: d.ID, EventID: d.EventID, Collection: d.Collection, DocKey: d.DocKey, Last: d.TxnLast, Status: d.Status}
	if d.TxnIndex != nil {
		p.Index = *d.TxnIndex
	}
	return p
}

// TxnGaps checks that every Mongo transaction among entries is whole:
// indexes 0..last, where the entry marked last gives last. It returns the
// transactions that are not, by transaction id.
func TxnGaps(entries []DeadLetter) []TxnGap {
	byTxn := map[string]*TxnGap{}
	var ids []string
	for _, d := range entries {
		if d.TxnID == "" {
			continue
		}
		g, ok := byTxn[d.TxnID]
		if !ok {
			g = &TxnGap{TxnID: d.TxnID, Last: -1}
			byTxn[d.TxnID] = g
			ids = append(ids, d.TxnID)
		}
		p := partOf(d)
		g.Parts = append(g.Parts, p)
		if p.Last && p.Index > g.Last {
			g.Last = p.Index
		}
	}
	sort.Strings(ids)
	var out []TxnGap
	for _, id := range ids {
		g := byTxn[id]
		sort.Slice(g.Parts, func(i, j int) bool {
			if g.Parts[i].Index != g.Parts[j].Index {
				return g.Parts[i].Index < g.Parts[j].Index
			}
			return g.Parts[i].ID < g.Parts[j].ID
		})
		have := map[int]bool{}
		top := -1
		for _, p := range g.Parts {
			have[p.Index] = true
			if p.Index > top {
				top = p.Index
			}
		}
		end := g.Last
		if end < 0 {
			end = top
		}
		g.Missing = []int{}
		for i := 0; i <= end; i++ {
			if !have[i] {
				g.Missing = append(g.Missing, i)
			}
		}
		if g.Last >= 0 && len(g.Missing) == 0 {
			continue // whole
		}
		out = append(out, *g)
	}
	return out
}
