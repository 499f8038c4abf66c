package replay

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/amanat/cdc/pkg/event"
)

// ParseClusterTime parses a range bound: a cluster time
// "<seconds>.<increment>", bare "<seconds>", or an RFC 3339 time. Second
// resolution bounds cover their whole second: as a start (end=false) from
// its first increment, as an end (end=true) through its last.
func ParseClusterTime(s string, end bool) (event.ClusterTime, error) {
	s = strings.TrimSpace(s)
	var ct event.ClusterTime
	if secs, inc, ok := strings.Cut(s, "."); ok && isDigits(secs) && isDigits(inc) {
		t, err1 := strconv.ParseUint(secs, 10, 32)
		i, err2 := strconv.ParseUint(inc, 10, 32)
		if err1 != nil || err2 != nil {
			return ct, fmt.Errorf("%w: cluster time %q out of range", ErrBadRange, s)
		}
		return event.ClusterTime{T: uint32(t), I: uint32(i)}, nil
	}
	var sec int64
	if isDigits(s) {
		t, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return ct, fmt.Errorf("%w: cluster time %q out of range", ErrBadRange, s)
		}
		sec = int64(t)
	} else {
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return ct, fmt.Errorf("%w: %q is not a cluster time <seconds>.<increment> or an RFC 3339 time", ErrBadRange, s)
		}
		sec = ts.Unix()
		if sec < 0 || sec > math.MaxUint32 {
			return ct, fmt.Errorf("%w: time %q out of range", ErrBadRange, s)
		}
	}
	ct.T = uint32(sec)
	if end {
		ct.I = math.MaxUint32
	}
	return ct, nil
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

// describe formats a cluster time for people.
func describe(ct event.ClusterTime) string {
	return ct.String() + " (" + ct.Time().Format(time.RFC3339) + ")"
}
