package sink

// AssignOwners is Assign over the members' owners (as MemberOwners
// returns them): the owner each lane goes to, as every instance computes
// it from the same member list (for status: who runs which lane).
func AssignOwners(lanes, owners []string) map[string]string {
	keys := make([]string, len(owners))
	for i, o := range owners {
		keys[i] = memberKey(o)
	}
	out := Assign(lanes, keys)
	for l, k := range out {
		out[l] = memberOwner(k)
	}
	return out
}
