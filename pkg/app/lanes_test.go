package app_test

import (
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/transforms"
)

// TestCheckLanesReferences: lanes must respect the mappings' references
// (the built-in money-core set): a reference that cannot wait for its
// parent keeps child and parent in one unsplit lane.
func TestCheckLanesReferences(t *testing.T) {
	cfg := config.Default()
	set, err := transforms.Load(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	colls := set.Collections()
	// core: fundsLedger's references are policy reject (to payments,
	// purchaseRequests and users), so those four stay together.
	core := "core:fundsLedger+payments+purchaseRequests+users"
	rest := func(except ...string) string {
		var out []string
	next:
		for _, c := range colls {
			for _, e := range except {
				if c == e {
					continue next
				}
			}
			out = append(out, c)
		}
		return strings.Join(out, "+")
	}
	money := []string{"fundsLedger", "payments", "purchaseRequests", "users"}
	tests := []struct {
		name  string
		lanes []string
		want  string // error substring; "" accepted
	}{
		{"no lanes", nil, ""},
		{"one lane", []string{"all:" + rest()}, ""},
		{"money core together, the rest apart", []string{core, "rest:" + rest(money...)}, ""},
		{"the rest split by id (their references wait or null)", []string{core, "rest/4:" + rest(money...)}, ""},
		{"ledger apart from its payments", []string{"ledger:fundsLedger", "others:" + rest("fundsLedger")},
			"funds_ledger_entries.payment_id (collection fundsLedger, lane ledger) references payments (lane others) with policy reject"},
		{"money core split by id", []string{"core/2:fundsLedger+payments+purchaseRequests+users", "rest:" + rest(money...)},
			"inside lane core, which is split by document id (2 lanes)"},
		{"a collection in no lane", []string{core}, "is in no lane"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.Sink.Lanes = tc.lanes
			err := app.CheckLanes(&c, set, colls)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %v\nwant one containing %q", err, tc.want)
			}
		})
	}
}
