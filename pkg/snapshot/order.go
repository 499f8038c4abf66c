package snapshot

import (
	"slices"
	"sort"

	"github.com/amanat/cdc/pkg/transform"
)

// canonicalRank orders the escrow collections parents first (the money
// core: people and catalogue, then requests and offers, then money). It
// only breaks ties and cycles of the reference graph; unknown collections
// come after these, by name.
var canonicalRank = map[string]int{
	"users": 0, "categories": 1,
	"requestTemplates": 2, "purchaseRequests": 3, "sellerOffers": 4,
	"payments": 5, "fundsLedger": 6, "derivedDestinations": 7, "trezorAccounts": 8, "pointTransactions": 9,
}

// Parents returns the other collections coll's mapping references (its
// columns and its child tables' columns), sorted.
func Parents(set *transform.Set, coll string) []string {
	m, ok := set.Get(coll)
	if !ok {
		return nil
	}
	seen := map[string]bool{}
	add := func(cs []transform.ColumnSpec) {
		for _, c := range cs {
			if c.Type == transform.TypeRef && c.Ref != nil && c.Ref.Collection != coll {
				if _, mapped := set.Get(c.Ref.Collection); mapped {
					seen[c.Ref.Collection] = true
				}
			}
		}
	}
	add(m.Columns)
	for _, ch := range m.Children {
		add(ch.Columns)
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Order sorts colls parents before children: a collection comes after
// every collection of colls it references (topological order of the
// mappings' references; self-references are ignored). Ties go to the
// canonical money-core order, then to the name. A reference cycle (in
// the escrow set, purchaseRequests <-> sellerOffers through the accepted
// offer) is broken at its lowest-ranked member; the sink's per-column
// policy (wait, null) covers the reference that points forward. cyclic
// lists the collections placed while a cycle was being broken.
func Order(set *transform.Set, colls []string) (ordered, cyclic []string) {
	in := map[string]bool{}
	for _, c := range colls {
		in[c] = true
	}
	deps := map[string][]string{}
	for _, c := range colls {
		for _, p := range Parents(set, c) {
			if in[p] {
				deps[c] = append(deps[c], p)
			}
		}
	}
	less := func(a, b string) bool {
		ra, oka := canonicalRank[a]
		rb, okb := canonicalRank[b]
		switch {
		case oka && okb && ra != rb:
			return ra < rb
		case oka != okb:
			return oka
		}
		return a < b
	}
	done := map[string]bool{}
	remaining := slices.Clone(colls)
	sort.Slice(remaining, func(i, j int) bool { return less(remaining[i], remaining[j]) })
	remaining = slices.Compact(remaining)
	for len(remaining) > 0 {
		pick := -1
		for i, c := range remaining {
			ready := true
			for _, p := range deps[c] {
				ready = ready && done[p]
			}
			if ready {
				pick = i
				break
			}
		}
		if pick < 0 {
			pick = 0 // a cycle: take the lowest-ranked collection
			cyclic = append(cyclic, remaining[0])
		}
		c := remaining[pick]
		ordered = append(ordered, c)
		done[c] = true
		remaining = slices.Delete(remaining, pick, pick+1)
	}
	return ordered, cyclic
}
