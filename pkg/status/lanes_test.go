package status_test

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/sink"
	"github.com/amanat/cdc/pkg/status"
)

// TestLanesSection: with sink.lanes the report reads each lane's stream
// (the default stream is not declared, and that is no problem), lists the
// live members of the members bucket with the lanes the assignment gives
// each, and warns while no member is live.
func TestLanesSection(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Mongo.Database = "shop"
	cfg.HTTP.Addr = ""
	cfg.Sink.Lanes = []string{"ledger:accounts+entries", "orders:orders"}
	ctx := t.Context()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: -1, StoreDir: cfg.NATSStoreDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	cfg.NATS.URL = emb.ClientURL()
	nc, js, err := bus.Connect(ctx, emb.ClientURL(), "fixture", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sc := bus.StreamsFromConfig(&cfg)
	if err := bus.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	published := map[string]uint64{"ledger": 3, "orders": 2}
	for lane, n := range published {
		for i := range n {
			if _, err := js.Publish(ctx, sc.LaneSubject(lane, "shop", lane), []byte(fmt.Sprintf("event %d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func() *status.Report {
		return status.Run(ctx, &cfg, status.Options{Timeout: 2 * time.Second})
	}

	r := run()
	if r.Lanes == nil {
		t.Fatal("no lanes section with sink.lanes configured")
	}
	if r.Stream.Error == "" || r.Consumer.Error == "" || r.Sink.Error == "" {
		t.Errorf("the default stream's sections must say they are per lane: %q %q %q", r.Stream.Error, r.Consumer.Error, r.Sink.Error)
	}
	for _, p := range r.Problems {
		if strings.HasPrefix(p, "stream:") || strings.HasPrefix(p, "consumer:") || strings.HasPrefix(p, "sink position:") {
			t.Errorf("problem about the undeclared default stream: %q", p)
		}
	}
	if len(r.Lanes.Items) != 2 {
		t.Fatalf("lanes %+v", r.Lanes.Items)
	}
	for _, it := range r.Lanes.Items {
		if it.StreamError != "" || it.Stream != sc.LaneStream(it.Name) || it.LastSeq != published[it.Name] {
			t.Errorf("lane %s: stream %s last %d error %q, want %s last %d", it.Name, it.Stream, it.LastSeq, it.StreamError, sc.LaneStream(it.Name), published[it.Name])
		}
		if it.Position.Consumer != sink.LaneConsumer(cfg.Sink.Consumer, it.Name) {
			t.Errorf("lane %s position consumer %s", it.Name, it.Position.Consumer)
		}
	}
	if len(r.Lanes.Members) != 0 || r.Lanes.MembersError != "" {
		t.Fatalf("members before any sink started: %+v %q", r.Lanes.Members, r.Lanes.MembersError)
	}
	if !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.HasPrefix(w, "sink lanes:") }) {
		t.Errorf("no warning while no member is live: %q", r.Warnings)
	}

	// Two live members, as the lane runners put them (key: the owner in
	// hex, pkg/sink members.go).
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: sink.MembersBucket(cfg.NATS.Stream), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	owners := []string{"cdc-1:42:aa", "cdc-2:43:bb"}
	for _, o := range owners {
		if _, err := kv.PutString(ctx, hex.EncodeToString([]byte(o)), o); err != nil {
			t.Fatal(err)
		}
	}
	r = run()
	want := sink.AssignOwners([]string{"ledger", "orders"}, owners)
	if len(r.Lanes.Members) != 2 || r.Lanes.Members[0].Owner != owners[0] || r.Lanes.Members[1].Owner != owners[1] {
		t.Fatalf("members %+v, want %v", r.Lanes.Members, owners)
	}
	got := map[string]string{}
	for _, m := range r.Lanes.Members {
		for _, l := range m.Lanes {
			got[l] = m.Owner
		}
	}
	for _, it := range r.Lanes.Items {
		if it.AssignedTo != want[it.Name] || got[it.Name] != want[it.Name] {
			t.Errorf("lane %s assigned to %q (members say %q), want %q", it.Name, it.AssignedTo, got[it.Name], want[it.Name])
		}
	}
	if slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.HasPrefix(w, "sink lanes:") }) {
		t.Errorf("warning with live members: %q", r.Warnings)
	}
}
