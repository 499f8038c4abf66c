package config_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/config"
)

func TestParseLanes(t *testing.T) {
	tests := []struct {
		specs []string
		want  string // error substring; "" ok
		lanes int
	}{
		{nil, "", 0},
		{[]string{"ledger:fundsLedger+payments", "users:users"}, "", 2},
		{[]string{" ledger : fundsLedger + payments "}, "", 1},
		{[]string{"ledger"}, "want name:collection", 0},
		{[]string{"Ledger:payments"}, "lane name", 0},
		{[]string{"a.b:payments"}, "lane name", 0},
		{[]string{"a:payments", "a:users"}, "named twice", 0},
		{[]string{"a:payments", "b:payments"}, "exactly one lane", 0},
		{[]string{"a:"}, "no collections", 0},
		// Split by document id: name/N expands to N lanes name_0..name_N-1.
		{[]string{"pay/4:payments", "users:users"}, "", 5},
		{[]string{"pay/1:payments"}, "from 2 to 64", 0},
		{[]string{"pay/65:payments"}, "from 2 to 64", 0},
		{[]string{"pay/x:payments"}, "from 2 to 64", 0},
		{[]string{"pay/2:payments", "pay_1:users"}, `lane "pay_1" is named twice`, 0},
		{[]string{"abcdefghijklmnopqrstuvwxyz012345/10:payments"}, "longer than 32", 0},
	}
	for _, tc := range tests {
		lanes, err := config.ParseLanes(tc.specs)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.specs, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one containing %q", tc.specs, err, tc.want)
		case tc.want == "" && len(lanes) != tc.lanes:
			t.Errorf("%q: %d lanes, want %d", tc.specs, len(lanes), tc.lanes)
		}
	}
}

func TestParseSplitLanes(t *testing.T) {
	lanes, err := config.ParseLanes([]string{"pay/3:payments+fundsLedger", "users:users"})
	if err != nil {
		t.Fatal(err)
	}
	want := []config.LaneConfig{
		{Name: "pay_0", Collections: []string{"payments", "fundsLedger"}, Group: "pay", Part: 0, Parts: 3},
		{Name: "pay_1", Collections: []string{"payments", "fundsLedger"}, Group: "pay", Part: 1, Parts: 3},
		{Name: "pay_2", Collections: []string{"payments", "fundsLedger"}, Group: "pay", Part: 2, Parts: 3},
		{Name: "users", Collections: []string{"users"}, Group: "users", Part: 0, Parts: 1},
	}
	if !reflect.DeepEqual(lanes, want) {
		t.Fatalf("ParseLanes = %+v\nwant %+v", lanes, want)
	}
	if err := config.CheckLanes(lanes, []string{"payments", "fundsLedger", "users"}); err != nil {
		t.Fatalf("CheckLanes of a split group: %v", err)
	}
}

func TestCheckLanes(t *testing.T) {
	lanes, err := config.ParseLanes([]string{"ledger:fundsLedger+payments", "users:users"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		replicated []string
		want       string
	}{
		{[]string{"fundsLedger", "payments", "users"}, ""},
		{[]string{"fundsLedger", "payments", "users", "categories"}, `"categories" is in no lane`},
		{[]string{"fundsLedger", "users"}, `"payments", which is not replicated`},
	}
	for _, tc := range tests {
		err := config.CheckLanes(lanes, tc.replicated)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: error %v, want %q", tc.replicated, err, tc.want)
		}
	}
	if err := config.CheckLanes(nil, []string{"x"}); err != nil {
		t.Errorf("no lanes: %v", err)
	}
}

func TestValidateLanes(t *testing.T) {
	cfg := config.Default()
	cfg.Sink.Lanes = []string{"bad name:users"}
	err := cfg.Validate(config.RoleSink)
	if err == nil || !strings.Contains(err.Error(), "sink.lanes") {
		t.Fatalf("want a sink.lanes error, got %v", err)
	}
}
