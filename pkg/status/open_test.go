package status_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/amanat/cdc/pkg/bus"
	"github.com/amanat/cdc/pkg/checkpoint"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/event"
	"github.com/amanat/cdc/pkg/status"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tokenAt is a resume token in MongoDB's shape (KeyString timestamp
// 0x82, seconds, increment) for cluster time ct.
func tokenAt(ct event.ClusterTime) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"_data":"82%08X%08X2B0229296E04"}`, ct.T, ct.I))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// fixture is an embedded store holding what a daemon leaves behind: the
// streams, events, a consumer and a tailer checkpoint.
type fixture struct {
	cfg        config.Config
	checkpoint event.ClusterTime
	events     int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Mongo.Database = "shop"
	cfg.NATS.Embedded.Port = freePort(t)
	cfg.HTTP.Addr = ""
	f := &fixture{cfg: cfg, checkpoint: event.ClusterTime{T: 1_700_000_000, I: 7}, events: 5}

	ctx := t.Context()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: -1, StoreDir: cfg.NATSStoreDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, js, err := bus.Connect(ctx, emb.ClientURL(), "fixture", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sc := bus.StreamsFromConfig(&cfg)
	if err := bus.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	for i := range f.events {
		if _, err := js.Publish(ctx, sc.Subject("shop", "orders"), []byte(fmt.Sprintf("event %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, cfg.NATS.Stream, jetstream.ConsumerConfig{
		Durable: cfg.Sink.Consumer, AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.NewKVStore(ctx, js, cfg.NATS.CheckpointBucket, checkpoint.Key("shop"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Save(ctx, &checkpoint.Checkpoint{V: checkpoint.Version, Token: tokenAt(f.checkpoint),
		ClusterTime: event.ClusterTime{T: f.checkpoint.T, I: 3}, Events: uint64(f.events), UpdatedAt: time.Now().Add(-time.Minute)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) run(t *testing.T) *status.Report {
	t.Helper()
	return status.Run(t.Context(), &f.cfg, status.Options{Timeout: 2 * time.Second})
}

// checkStored checks the sections read from the fixture's store.
func (f *fixture) checkStored(t *testing.T, r *status.Report) {
	t.Helper()
	tl := r.Tailer
	if !tl.Found || tl.Error != "" {
		t.Fatalf("tailer checkpoint not read: %+v", tl)
	}
	if tl.ClusterTime == nil || tl.ClusterTime.T != f.checkpoint.T || tl.ClusterTime.I != f.checkpoint.I {
		t.Errorf("checkpoint cluster time %v, want %v (from the resume token)", tl.ClusterTime, f.checkpoint)
	}
	if tl.LastEventClusterTime == nil || tl.LastEventClusterTime.I != 3 {
		t.Errorf("last event cluster time %v", tl.LastEventClusterTime)
	}
	if tl.Events != uint64(f.events) || tl.AgeSeconds < 59 || tl.AgeSeconds > 600 {
		t.Errorf("events %d age %v", tl.Events, tl.AgeSeconds)
	}
	if !strings.Contains(string(tl.ResumeToken), "_data") {
		t.Errorf("resume token %s", tl.ResumeToken)
	}
	s := r.Stream
	if s.Error != "" || s.Messages != uint64(f.events) || s.FirstSeq != 1 || s.LastSeq != uint64(f.events) || s.Bytes == 0 || s.LastTime == nil {
		t.Errorf("stream %+v", s)
	}
	if r.DLQStream.Error != "" || r.DLQStream.Messages != 0 {
		t.Errorf("dlq stream %+v", r.DLQStream)
	}
	c := r.Consumer
	if !c.Found || c.Pending != uint64(f.events) || c.AckFloorSeq != 0 {
		t.Errorf("consumer %+v", c)
	}
}

func hasProblem(r *status.Report, substr string) bool {
	return slices.ContainsFunc(r.Problems, func(p string) bool { return strings.Contains(p, substr) })
}

// TestStoredStateWhenTheDaemonIsDown: nothing listens on the daemon's
// port, so a temporary server reads the store, and is gone afterwards.
func TestStoredStateWhenTheDaemonIsDown(t *testing.T) {
	f := newFixture(t)
	r := f.run(t)
	if r.NATS.Mode != status.ModeStoredState || !r.NATS.Reachable {
		t.Fatalf("nats %+v", r.NATS)
	}
	f.checkStored(t, r)
	if r.Healthy || !hasProblem(r, "daemon: not running") {
		t.Errorf("a stopped daemon must be a problem: %q", r.Problems)
	}
	// Postgres and Mongo are not configured: named, not fatal to the rest.
	if !hasProblem(r, "postgres: postgres.url is not set") || !hasProblem(r, "mongo: mongo.uri is not set") {
		t.Errorf("problems %q", r.Problems)
	}
	if r.Sink.Error == "" || r.Lag.Error == "" || r.Oplog.Error == "" || r.DeadLetters.Error == "" {
		t.Errorf("sections of unreachable systems must say so: sink %q lag %q oplog %q dlq %q",
			r.Sink.Error, r.Lag.Error, r.Oplog.Error, r.DeadLetters.Error)
	}
	// The temporary server is shut down: the store opens again, twice.
	f.checkStored(t, f.run(t))
}

// TestDaemonRunning: the daemon's embedded server answers on its port;
// status reads through it and never opens the store itself.
func TestDaemonRunning(t *testing.T) {
	f := newFixture(t)
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Port: f.cfg.NATS.Embedded.Port, StoreDir: f.cfg.NATSStoreDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	r := f.run(t)
	if r.NATS.Mode != status.ModeDaemon {
		t.Fatalf("nats %+v", r.NATS)
	}
	f.checkStored(t, r)
	if hasProblem(r, "daemon") {
		t.Errorf("problems %q", r.Problems)
	}

	t.Run("external url", func(t *testing.T) {
		f.cfg.NATS.URL = emb.ClientURL()
		defer func() { f.cfg.NATS.URL = "" }()
		r := f.run(t)
		if r.NATS.Mode != status.ModeExternal {
			t.Fatalf("nats %+v", r.NATS)
		}
		f.checkStored(t, r)
	})
}

// TestNeverOpensAStoreThatMayBeInUse: whenever the daemon may be up, the
// store is left alone and the reason is named.
func TestNeverOpensAStoreThatMayBeInUse(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name  string
		setup func(t *testing.T, cfg *config.Config)
		want  string
	}{
		{"port taken by something that is not NATS", func(t *testing.T, cfg *config.Config) {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.NATS.Embedded.Port))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}, "not opening the store"},
		{"daemon's HTTP endpoint answers", func(t *testing.T, cfg *config.Config) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }))
			t.Cleanup(srv.Close)
			cfg.HTTP.Addr = strings.TrimPrefix(srv.URL, "http://")
		}, "the daemon answers on http.addr"},
		{"random port and no HTTP address", func(t *testing.T, cfg *config.Config) {
			cfg.NATS.Embedded.Port = -1
		}, "cannot tell whether a daemon uses the store"},
		{"no store", func(t *testing.T, cfg *config.Config) {
			cfg.DataDir = t.TempDir()
		}, "no JetStream store"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.cfg
			tc.setup(t, &cfg)
			before := storeFiles(t, cfg.NATSStoreDir())
			r := status.Run(t.Context(), &cfg, status.Options{Timeout: time.Second})
			if r.NATS.Reachable || !strings.Contains(r.NATS.Error, tc.want) {
				t.Fatalf("nats %+v, want an error containing %q", r.NATS, tc.want)
			}
			if !hasProblem(r, tc.want) || r.Healthy {
				t.Errorf("problems %q", r.Problems)
			}
			if r.Tailer.Error != "NATS unreachable" || r.Stream.Error != "NATS unreachable" {
				t.Errorf("tailer %q stream %q", r.Tailer.Error, r.Stream.Error)
			}
			if after := storeFiles(t, cfg.NATSStoreDir()); !slices.Equal(before, after) {
				t.Errorf("the store changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// storeFiles lists the store's files with their modification times.
func storeFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d %s", p, info.Size(), info.ModTime().Format(time.RFC3339Nano)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnreachableEverything: every section says why it is unknown, one
// problem per system, never a panic or an empty report.
func TestUnreachableEverything(t *testing.T) {
	cfg := config.Default()
	cfg.NATS.URL = fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))
	cfg.Postgres.URL = fmt.Sprintf("postgres://u:s3cret@127.0.0.1:%d/db", freePort(t))
	cfg.Mongo.URI = fmt.Sprintf("mongodb://u:s3cret@127.0.0.1:%d/?directConnection=true", freePort(t))
	cfg.Mongo.Database = "shop"
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r := status.Run(ctx, &cfg, status.Options{Timeout: 500 * time.Millisecond, Counts: true})
	if r.Healthy || len(r.Problems) != 3 {
		t.Fatalf("want exactly the three systems as problems, got %q", r.Problems)
	}
	for i, sys := range []string{"nats: unreachable", "postgres: unreachable", "mongo: unreachable"} {
		if !strings.HasPrefix(r.Problems[i], sys) {
			t.Errorf("problem %d = %q, want %s...", i, r.Problems[i], sys)
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "s3cret") {
		t.Errorf("the report leaks a password: %s", b)
	}
	if len(r.Collections.Items) == 0 || r.Collections.Items[0].Rows != nil || r.Collections.PostgresError == "" || r.Collections.MongoError == "" {
		t.Errorf("collections %+v", r.Collections)
	}
}
