package sink

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// The reader's watchdog restarts only a pull that can receive nothing:
// work pending, room to deliver it, and no pull request at the server.
func TestPullStalled(t *testing.T) {
	info := func(pending uint64, waiting, ackPending, maxAck int) *jetstream.ConsumerInfo {
		return &jetstream.ConsumerInfo{NumPending: pending, NumWaiting: waiting, NumAckPending: ackPending,
			Config: jetstream.ConsumerConfig{MaxAckPending: maxAck}}
	}
	for _, c := range []struct {
		name string
		ci   *jetstream.ConsumerInfo
		want bool
	}{
		{"idle stream", info(0, 0, 0, 20000), false},
		{"pull request waiting", info(500, 1, 0, 20000), false},
		{"in flight at the limit (the apply loop is slow)", info(500, 0, 20000, 20000), false},
		{"lost pull request", info(500, 0, 10, 20000), true},
		{"lost pull request, no ack limit", info(1, 0, 10, -1), true},
	} {
		if got := pullStalled(c.ci); got != c.want {
			t.Errorf("%s: pullStalled = %v, want %v", c.name, got, c.want)
		}
	}
}
