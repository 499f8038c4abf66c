package transforms_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/transforms"
)

// TestLoad: without transforms.dir the built-in set loads; with it, the
// directory's mappings (here a copy of the built-in ones, less one); a
// directory that cannot be read is an error.
func TestLoad(t *testing.T) {
	cfg := config.Default()
	builtin, err := transforms.Load(&cfg)
	if err != nil {
		t.Fatalf("built-in set: %v", err)
	}
	if len(builtin.Collections()) == 0 {
		t.Fatal("built-in set maps no collection")
	}

	dir := t.TempDir()
	names, err := fs.Glob(transforms.Builtin, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == "derivedDestinations.yaml" {
			continue // referenced by nothing: the set still loads without it
		}
		data, err := fs.ReadFile(transforms.Builtin, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Transforms.Dir = dir
	fromDir, err := transforms.Load(&cfg)
	if err != nil {
		t.Fatalf("transforms.dir %s: %v", dir, err)
	}
	want := slices.DeleteFunc(builtin.Collections(), func(c string) bool { return c == "derivedDestinations" })
	if got := fromDir.Collections(); !slices.Equal(got, want) {
		t.Fatalf("transforms.dir maps %v, want %v", got, want)
	}

	cfg.Transforms.Dir = filepath.Join(dir, "missing")
	if _, err := transforms.Load(&cfg); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing transforms.dir: %v, want fs.ErrNotExist", err)
	}
}

// TestCollections: no mongo.collections is every mapped collection; a
// list is that list, sorted (the configuration's own slice untouched); an
// entry without a mapping is a *config.FieldError naming it.
func TestCollections(t *testing.T) {
	cfg := config.Default()
	set, err := transforms.Load(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	all := set.Collections()
	for _, tc := range []struct {
		name   string
		list   []string
		want   []string
		field  string // the FieldError's field; "" none
		reason string
	}{
		{"every mapped collection", nil, all, "", ""},
		{"the configured ones, sorted", []string{"users", "payments"}, []string{"payments", "users"}, "", ""},
		{"one without a mapping", []string{"users", "nosuch"}, nil, "mongo.collections[1]", `collection "nosuch" has no transform`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.Mongo.Collections = slices.Clone(tc.list)
			got, err := transforms.Collections(&c, set)
			if tc.field != "" {
				var fe *config.FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Reason, tc.reason) {
					t.Fatalf("error %v, want a *config.FieldError on %s containing %q", err, tc.field, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("collections %v, want %v", got, tc.want)
			}
			if !slices.Equal(c.Mongo.Collections, tc.list) {
				t.Fatalf("mongo.collections changed to %v", c.Mongo.Collections)
			}
		})
	}
}
