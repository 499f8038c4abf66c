package sink

// LeaveLikeAKill makes r skip deleting its membership key when it
// returns, as a killed process would (tests).
func LeaveLikeAKill(r *LaneRunner) { r.noLeave = true }

// OnAssigned sets the callback r reports its lanes to (tests).
func OnAssigned(r *LaneRunner, f func([]string)) { r.assigned = f }
