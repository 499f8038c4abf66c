package event

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseClusterTime parses "<seconds>.<increment>", a bare "<seconds>", or
// an RFC 3339 time. wholeSecond reports the latter two forms, which name a
// second rather than one oplog entry (I is 0); callers decide whether such
// a bound covers the second's first or last entry.
func ParseClusterTime(s string) (ct ClusterTime, wholeSecond bool, err error) {
	s = strings.TrimSpace(s)
	if secs, inc, ok := strings.Cut(s, "."); ok && isDigits(secs) && isDigits(inc) {
		t, err1 := strconv.ParseUint(secs, 10, 32)
		i, err2 := strconv.ParseUint(inc, 10, 32)
		if err1 != nil || err2 != nil {
			return ct, false, fmt.Errorf("cluster time %q out of range", s)
		}
		return ClusterTime{T: uint32(t), I: uint32(i)}, false, nil
	}
	if isDigits(s) {
		t, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return ct, false, fmt.Errorf("cluster time %q out of range", s)
		}
		return ClusterTime{T: uint32(t)}, true, nil
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return ct, false, fmt.Errorf("%q is not a cluster time <seconds>.<increment> or an RFC 3339 time", s)
	}
	if ts.Unix() < 0 || ts.Unix() > math.MaxUint32 {
		return ct, false, fmt.Errorf("time %q out of range", s)
	}
	return ClusterTime{T: uint32(ts.Unix())}, true, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
