package sink

import (
	"fmt"
	"testing"
)

func laneList(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("lane%d", i)
	}
	return out
}

func TestAssignStableBalancedMinimalMovement(t *testing.T) {
	lanes := laneList(60)
	tests := []struct {
		name          string
		before, after []string
	}{
		{"join 3->4", []string{"a", "b", "c"}, []string{"a", "b", "c", "d"}},
		{"leave 3->2", []string{"a", "b", "c"}, []string{"a", "c"}},
		{"join 1->2", []string{"a"}, []string{"a", "b"}},
		{"leave 4->3", []string{"host1:1:x", "host2:1:y", "host3:1:z", "host4:1:w"}, []string{"host1:1:x", "host2:1:y", "host4:1:w"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a1 := Assign(lanes, tc.before)
			// Stable: the same list in another order gives the same result.
			rev := append([]string(nil), tc.before...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			if a := Assign(lanes, rev); fmt.Sprint(a) != fmt.Sprint(a1) {
				t.Fatalf("assignment depends on member order: %v vs %v", a1, a)
			}
			// Balanced: with 60 lanes no member gets more than twice its share or nothing.
			count := map[string]int{}
			for _, m := range Assign(lanes, tc.after) {
				count[m]++
			}
			share := len(lanes) / len(tc.after)
			for _, m := range tc.after {
				if count[m] == 0 || count[m] > 2*share {
					t.Errorf("member %s has %d lanes of %d over %d members: %v", m, count[m], len(lanes), len(tc.after), count)
				}
			}
			// Minimal movement: a lane moves only to a joining member or away from a leaving one.
			a2 := Assign(lanes, tc.after)
			inBefore, inAfter := map[string]bool{}, map[string]bool{}
			for _, m := range tc.before {
				inBefore[m] = true
			}
			for _, m := range tc.after {
				inAfter[m] = true
			}
			for _, l := range lanes {
				if a1[l] != a2[l] && inAfter[a1[l]] && inBefore[a2[l]] {
					t.Errorf("lane %s moved from %s to %s, both members before and after", l, a1[l], a2[l])
				}
			}
		})
	}
}

func TestAssignEdgeCases(t *testing.T) {
	if a := Assign([]string{"x"}, nil); len(a) != 0 {
		t.Fatalf("no members: want no assignment, got %v", a)
	}
	if a := Assign([]string{"x", "y"}, []string{"only"}); a["x"] != "only" || a["y"] != "only" {
		t.Fatalf("one member: want every lane, got %v", a)
	}
}

func TestMemberKeyRoundTrip(t *testing.T) {
	for _, owner := range []string{"host:123:abcd", "a b/c", ""} {
		if got := memberOwner(memberKey(owner)); got != owner {
			t.Errorf("memberOwner(memberKey(%q)) = %q", owner, got)
		}
	}
}
