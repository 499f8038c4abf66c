package snapshot_test

import (
	"slices"
	"testing"

	"github.com/amanat/cdc/pkg/snapshot"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

// TestOrderMoneyCore: the shipped mappings scan parents first. Every
// reference between two collections points backwards in the order except
// the one that closes the purchaseRequests <-> sellerOffers cycle (the
// accepted offer, policy wait).
func TestOrderMoneyCore(t *testing.T) {
	set, err := transform.Load(transforms.Builtin, ".")
	if err != nil {
		t.Fatal(err)
	}
	order, cyclic := snapshot.Order(set, set.Collections())
	want := []string{"users", "categories", "requestTemplates", "purchaseRequests", "sellerOffers",
		"payments", "fundsLedger", "derivedDestinations", "trezorAccounts", "pointTransactions"}
	if !slices.Equal(order, want) {
		t.Fatalf("order = %v\nwant    %v", order, want)
	}
	if !slices.Equal(cyclic, []string{"purchaseRequests"}) {
		t.Fatalf("cycle broken at %v, want [purchaseRequests]", cyclic)
	}
	pos := map[string]int{}
	for i, c := range order {
		pos[c] = i
	}
	for _, c := range order {
		for _, p := range snapshot.Parents(set, c) {
			if pos[p] > pos[c] && !(c == "purchaseRequests" && p == "sellerOffers") {
				t.Errorf("%s is scanned before its parent %s", c, p)
			}
		}
	}
	// A subset orders the same way, and a parent outside it is ignored.
	sub, _ := snapshot.Order(set, []string{"fundsLedger", "payments", "users"})
	if !slices.Equal(sub, []string{"users", "payments", "fundsLedger"}) {
		t.Fatalf("subset order = %v", sub)
	}
}

func TestOrderUnknownCollections(t *testing.T) {
	mk := func(y string) *transform.Mapping {
		m, err := transform.Parse([]byte(y), "test")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	set, err := transform.NewSet(
		mk("version: 1\ncollection: zeta\ntable: zeta\ncolumns:\n  - {column: name, field: name, type: text}\n"),
		mk("version: 1\ncollection: alpha\ntable: alpha\ncolumns:\n  - {column: z, field: z, type: ref, ref: {collection: zeta, missing: reject}}\n"),
		mk("version: 1\ncollection: beta\ntable: beta\ncolumns:\n  - {column: name, field: name, type: text}\n"),
	)
	if err != nil {
		t.Fatal(err)
	}
	order, cyclic := snapshot.Order(set, []string{"alpha", "beta", "zeta"})
	if !slices.Equal(order, []string{"beta", "zeta", "alpha"}) || len(cyclic) != 0 {
		t.Fatalf("order = %v, cyclic %v", order, cyclic)
	}
}
