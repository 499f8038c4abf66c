package cli

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/bus/bustest"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/mongotest"
)

// writeConfig writes a configuration file of yaml (log at warn) and
// returns globals that load it.
func writeConfig(t *testing.T, yaml string) *globals {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cdc.yaml")
	if err := os.WriteFile(path, []byte(yaml+"log:\n  level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &globals{configPath: path, stdout: io.Discard, stderr: io.Discard}
}

// TestSetupLoads: setup loads the configuration and, as asked, the
// mappings and the replicated collections; unloadable mappings are the
// operator's input (usageError: exit code 2), a mongo.collections entry
// without a mapping a config.FieldError (exit code 2 too), checked only
// when the replicated collections are asked for.
func TestSetupLoads(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		name       string
		yaml       string
		what       loads
		mappings   bool
		replicated []string // nil: not loaded
		usage      bool     // a *usageError
		field      string   // a *config.FieldError on this field
	}{
		{"configuration only", "", loadConfig, false, nil, false, ""},
		{"and the mappings", "", loadMappings, true, nil, false, ""},
		{"and the replicated collections", "mongo:\n  collections: [users, payments]\n", loadReplicated, true, []string{"payments", "users"}, false, ""},
		{"an empty transforms.dir", "transforms:\n  dir: " + empty + "\n", loadMappings, false, nil, true, ""},
		{"a collection without a mapping", "mongo:\n  collections: [users, nosuch]\n", loadReplicated, false, nil, false, "mongo.collections[1]"},
		{"a collection without a mapping, not asked", "mongo:\n  collections: [users, nosuch]\n", loadMappings, true, nil, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := writeConfig(t, tc.yaml)
			s, err := g.setup(0, tc.what)
			var ue *usageError
			var fe *config.FieldError
			switch {
			case tc.usage:
				if !errors.As(err, &ue) {
					t.Fatalf("error %v, want a usage error", err)
				}
				return
			case tc.field != "":
				if !errors.As(err, &fe) || fe.Field != tc.field {
					t.Fatalf("error %v, want a *config.FieldError on %s", err, tc.field)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			defer s.close(t.Context())
			if (s.set != nil) != tc.mappings || !slices.Equal(s.replicated, tc.replicated) || s.log == nil {
				t.Fatalf("mappings loaded %t, replicated %v, logger %v; want %t, %v and a logger", s.set != nil, s.replicated, s.log, tc.mappings, tc.replicated)
			}
		})
	}
	g := writeConfig(t, "")
	g.configPath = filepath.Join(empty, "missing.yaml")
	var ue *usageError
	if _, err := g.setup(0, loadConfig); !errors.As(err, &ue) {
		t.Fatalf("a missing configuration file: %v, want a usage error", err)
	}
}

// TestSetupConnect: connect opens what it is asked for (MongoDB and the
// bus here; PostgreSQL alone later), close releases them; with a timeout
// an unreachable database fails within it, naming the database, and
// leaves nothing open.
func TestSetupConnect(t *testing.T) {
	ctx := t.Context()
	srv := mongotest.Start(t)
	nc, _ := bustest.Start(t)
	g := writeConfig(t, "mongo:\n  uri: "+srv.URI()+"\n  database: escrow\nnats:\n  url: "+nc.ConnectedUrl()+"\n")
	s, err := g.setup(0, loadConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.connect(ctx, systems{mongo: true, bus: true}); err != nil {
		t.Fatal(err)
	}
	if s.client == nil || s.bus == nil || s.pool != nil {
		t.Fatalf("client %v bus %v pool %v: want MongoDB and the bus, no pool", s.client, s.bus, s.pool)
	}
	if _, err := s.bus.JS.Stream(ctx, s.cfg.NATS.Stream); err != nil {
		t.Fatalf("the bus did not declare the stream %s: %v", s.cfg.NATS.Stream, err)
	}
	conn, client := s.bus.Conn, s.client
	s.close(ctx)
	if !conn.IsClosed() {
		t.Error("close left the NATS connection open")
	}
	if err := client.Ping(ctx, nil); err == nil {
		t.Error("close left the MongoDB client connected")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	g = writeConfig(t, "mongo:\n  uri: mongodb://127.0.0.1:"+port+"/?directConnection=true\n  database: escrow\n"+
		"postgres:\n  url: postgres://u:pw@127.0.0.1:"+port+"/db?sslmode=disable\n")
	for _, tc := range []struct {
		name string
		want systems
		says string
	}{
		{"MongoDB", systems{mongo: true}, "MongoDB unreachable at start-up"},
		{"PostgreSQL", systems{pgConns: 1}, "PostgreSQL unreachable at start-up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := g.setup(0, loadConfig)
			if err != nil {
				t.Fatal(err)
			}
			defer s.close(ctx)
			tc.want.timeout = 300 * time.Millisecond
			start := time.Now()
			err = s.connect(ctx, tc.want)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want one saying %q", err, tc.says)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %s: the 300ms timeout did not bound it", d)
			}
			if s.client != nil || s.pool != nil || s.bus != nil {
				t.Fatal("a failed connect kept a connection")
			}
		})
	}
}
