package replay

import (
	"fmt"
	"math"
	"time"

	"github.com/amanat/cdc/pkg/event"
)

// ParseClusterTime parses a range bound: a cluster time
// "<seconds>.<increment>", bare "<seconds>", or an RFC 3339 time. Second
// resolution bounds cover their whole second: as a start (end=false) from
// its first increment, as an end (end=true) through its last.
func ParseClusterTime(s string, end bool) (event.ClusterTime, error) {
	ct, whole, err := event.ParseClusterTime(s)
	if err != nil {
		return ct, fmt.Errorf("%w: %v", ErrBadRange, err)
	}
	if whole && end {
		ct.I = math.MaxUint32
	}
	return ct, nil
}

// describe formats a cluster time for people.
func describe(ct event.ClusterTime) string {
	return ct.String() + " (" + ct.Time().Format(time.RFC3339) + ")"
}
