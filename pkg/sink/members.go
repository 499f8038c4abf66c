package sink

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Membership of the sink instances that share the lanes: a JetStream KV
// bucket (no home-made consensus) where every instance puts its key each
// heartbeat; the bucket's TTL (MemberTTLFactor heartbeats) removes the key
// of an instance that stopped putting it (killed, partitioned). Every
// instance reads the same key list and computes the same assignment
// (Assign); two instances that briefly read different lists may both
// start a lane's sink, and then the Postgres fence (state.AcquireFence)
// lets only one of them apply it: membership decides who tries, the fence
// who commits.

// MemberTTLFactor is the members bucket's TTL in heartbeats: an instance
// that missed this many heartbeats is gone and its lanes move.
const MemberTTLFactor = 3

// DefaultHeartbeat is how often an instance renews its membership.
const DefaultHeartbeat = 2 * time.Second

// MembersBucket is the KV bucket of the sink instances of the change
// stream named stream.
func MembersBucket(stream string) string { return stream + "_sink_members" }

// members is this instance's handle on the members bucket.
type members struct {
	kv  jetstream.KeyValue
	key string
}

// memberKey is owner as a KV key (hex: an owner is host:pid:nonce, and
// ':' is not a valid key character).
func memberKey(owner string) string { return hex.EncodeToString([]byte(owner)) }

func memberOwner(key string) string {
	b, err := hex.DecodeString(key)
	if err != nil {
		return key
	}
	return string(b)
}

func joinMembers(ctx context.Context, js jetstream.JetStream, bucket, owner string, heartbeat time.Duration, replicas int) (*members, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "CDC sink instances sharing the lanes (key per live instance, expiring)",
		History:     1,
		TTL:         MemberTTLFactor * heartbeat,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("declare members bucket %s: %w", bucket, err)
	}
	return &members{kv: kv, key: memberKey(owner)}, nil
}

// beat puts this instance's key (renewing its TTL).
func (m *members) beat(ctx context.Context, owner string) error {
	if _, err := m.kv.PutString(ctx, m.key, owner); err != nil {
		return fmt.Errorf("members heartbeat: %w", err)
	}
	return nil
}

// list returns the live members' keys, sorted.
func (m *members) list(ctx context.Context) ([]string, error) {
	lister, err := m.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	var out []string
	for k := range lister.Keys() {
		out = append(out, k)
	}
	// The channel closed: the listing is complete (Stop is for ending one
	// early, and fails on a finished one).
	slices.Sort(out)
	return out, nil
}

// leave deletes this instance's key, so the others take its lanes at
// their next heartbeat rather than after the TTL.
func (m *members) leave(ctx context.Context) error {
	if err := m.kv.Delete(ctx, m.key); err != nil {
		return fmt.Errorf("leave members: %w", err)
	}
	return nil
}

// Assign is the rendezvous (highest random weight) assignment of lanes to
// members: each lane goes to the member with the highest weight(member,
// lane). Every instance computes it from the same member list without
// talking to the others; it is balanced in expectation, and when a member
// joins or leaves only the lanes it takes or held move (a lane's other
// weights do not change). A tie (not expected of a 64-bit hash) goes to
// the greater member key. No members: no assignment.
func Assign(lanes, members []string) map[string]string {
	out := make(map[string]string, len(lanes))
	for _, l := range lanes {
		var best string
		var bestW uint64
		for i, m := range members {
			w := weight(m, l)
			if i == 0 || w > bestW || (w == bestW && m > best) {
				best, bestW = m, w
			}
		}
		if len(members) > 0 {
			out[l] = best
		}
	}
	return out
}

// weight hashes (member, lane): FNV-1a then the splitmix64 finaliser, so
// that members whose names differ in a few characters spread well.
func weight(member, lane string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(member))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(lane))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
