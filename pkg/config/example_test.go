package config_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/amanat/cdc/pkg/config"
)

// examplePath is the documented example configuration at the repository
// root. It must stay complete and loadable: this file checks both.
const examplePath = "../../cdc.example.yaml"

// noEnv is an environment with no variables at all (a nil environ func
// would mean os.Environ).
func noEnv() []string { return nil }

func env(kv ...string) func() []string { return func() []string { return kv } }

// aliases are the short environment names of load.go.
var aliases = map[string]string{
	"mongo.uri":      "CDC_MONGO_URI",
	"mongo.database": "CDC_MONGO_DATABASE",
	"postgres.url":   "CDC_PG_URL",
	"nats.url":       "CDC_NATS_URL",
}

// noEnvOverride are keys the loader has no environment variable for:
// top-level keys have no <SECTION>, and only CDC_<SECTION>__<KEY> and the
// aliases are mapped. cdc.example.yaml and the README say so; if load.go
// learns to map them, TestEnvVarForEveryKey fails here and this list, the
// example and the README must be updated.
var noEnvOverride = map[string]bool{}

// envName is the environment variable documented for a dotted key.
func envName(key string) string {
	if a, ok := aliases[key]; ok {
		return a
	}
	return "CDC_" + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}

var durationType = reflect.TypeOf(time.Duration(0))

// leaf is one configuration key: its dotted koanf path and where it lives
// in config.Config.
type leaf struct {
	key   string
	index []int
	typ   reflect.Type
}

// leaves walks config.Config by its koanf tags.
func leaves(t *testing.T) []leaf {
	t.Helper()
	var out []leaf
	var walk func(typ reflect.Type, prefix string, index []int)
	walk = func(typ reflect.Type, prefix string, index []int) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "" || tag == "-" {
				t.Fatalf("field %s%s has no koanf tag: every field must be a documented key", prefix, f.Name)
			}
			key := prefix + tag
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, key+".", idx)
				continue
			}
			out = append(out, leaf{key: key, index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeOf(config.Config{}), "", nil)
	if len(out) < 30 {
		t.Fatalf("found only %d configuration keys; the walk is broken", len(out))
	}
	return out
}

func loadExample(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.Load(examplePath, noEnv)
	if err != nil {
		t.Fatalf("Load(%s): %v", examplePath, err)
	}
	return cfg
}

func TestExampleLoadsAndValidates(t *testing.T) {
	cfg := loadExample(t)
	if cfg.Mongo.URI == "" || cfg.Mongo.Database == "" || cfg.Postgres.URL == "" {
		t.Fatalf("the example must set mongo.uri, mongo.database and postgres.url; got %q, %q, %q",
			cfg.Mongo.URI, cfg.Mongo.Database, cfg.Postgres.URL)
	}
	roles := []struct {
		name string
		role config.Role
	}{
		{"all", config.RoleAll},
		{"tailer", config.RoleTailer},
		{"postgres", config.RolePostgres},
	}
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			if err := cfg.Validate(r.role); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
	// A sink on its own reads the bus another process serves.
	t.Run("sink with CDC_NATS_URL", func(t *testing.T) {
		c, err := config.Load(examplePath, env("CDC_NATS_URL=nats://127.0.0.1:4222"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(config.RoleSink); err != nil {
			t.Fatalf("Validate: %v", err)
		}
	})
}

// TestExampleShowsDefaults: apart from the three connection settings, the
// example holds exactly the built-in defaults it claims to document.
func TestExampleShowsDefaults(t *testing.T) {
	cfg := loadExample(t)
	want := config.Default()
	want.Mongo.URI, want.Mongo.Database, want.Postgres.URL = cfg.Mongo.URI, cfg.Mongo.Database, cfg.Postgres.URL
	if len(cfg.Mongo.Collections) == 0 {
		cfg.Mongo.Collections = nil
	}
	if len(cfg.Sink.UnparkedCollections) == 0 {
		cfg.Sink.UnparkedCollections = nil
	}
	for _, l := range leaves(t) {
		got := reflect.ValueOf(cfg).FieldByIndex(l.index).Interface()
		def := reflect.ValueOf(want).FieldByIndex(l.index).Interface()
		if !reflect.DeepEqual(got, def) {
			t.Errorf("%s: example has %v, default is %v", l.key, got, def)
		}
	}
}

// TestExampleCoversEveryKey: every field of config.Config appears in the
// example as its dotted key, and its comment names its environment
// variable. (Keys in the example that are not fields fail Load.)
func TestExampleCoversEveryKey(t *testing.T) {
	k := koanf.New(".")
	if err := k.Load(file.Provider(examplePath), yaml.Parser()); err != nil {
		t.Fatalf("parse %s: %v", examplePath, err)
	}
	raw, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for _, l := range leaves(t) {
		t.Run(l.key, func(t *testing.T) {
			if !k.Exists(l.key) {
				t.Errorf("key %s is missing from %s", l.key, examplePath)
			}
			if noEnvOverride[l.key] {
				return
			}
			if name := envName(l.key); !strings.Contains(text, "Env: "+name) {
				t.Errorf("%s does not document the environment variable %s for %s", examplePath, name, l.key)
			}
		})
	}
}

// TestEnvVarForEveryKey sets each key's documented environment variable to
// a non-default value and checks that it lands in that field. A secret's
// _file key gets the path of a file, whose content must land in the
// secret's own field (TestSecretFiles covers the rest).
func TestEnvVarForEveryKey(t *testing.T) {
	secretOf := map[string]string{}
	for _, sf := range config.SecretFiles() {
		secretOf[sf.FileKey] = sf.Key
	}
	byKey := map[string]leaf{}
	for _, l := range leaves(t) {
		byKey[l.key] = l
	}
	for _, l := range leaves(t) {
		t.Run(l.key, func(t *testing.T) {
			name := envName(l.key)
			var raw string
			var want any
			switch {
			case secretOf[l.key] != "":
				raw = filepath.Join(t.TempDir(), "secret")
				if err := os.WriteFile(raw, []byte("from-file\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				want = raw
				cfg, err := config.Load("", env(name+"="+raw))
				if err != nil {
					t.Fatalf("%s=%s: %v", name, raw, err)
				}
				if got := reflect.ValueOf(cfg).FieldByIndex(byKey[secretOf[l.key]].index).Interface(); got != "from-file" {
					t.Errorf("%s=%s: %s = %#v, want the file's content", name, raw, secretOf[l.key], got)
				}
			case l.typ == durationType:
				raw, want = "42s", 42*time.Second
			case l.typ.Kind() == reflect.String:
				raw, want = "from-env", "from-env"
			case l.typ.Kind() == reflect.Bool:
				raw, want = "true", true
			case l.typ.Kind() == reflect.Int:
				raw, want = "7", 7
			case l.typ.Kind() == reflect.Int32:
				raw, want = "7", int32(7)
			case l.typ.Kind() == reflect.Int64:
				raw, want = "7", int64(7)
			case l.typ.Kind() == reflect.Slice && l.typ.Elem().Kind() == reflect.String:
				raw, want = "users, payments,", []string{"users", "payments"}
			default:
				t.Fatalf("no test value for %s of type %s: extend this test", l.key, l.typ)
			}
			cfg, err := config.Load("", env(name+"="+raw))
			if noEnvOverride[l.key] {
				if err == nil || !strings.Contains(err.Error(), name) {
					t.Fatalf("%s: expected the loader to reject %s (no override for top-level keys); err = %v. "+
						"If it is supported now, drop it from noEnvOverride and document it in cdc.example.yaml and README.md", l.key, name, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s=%s: %v", name, raw, err)
			}
			got := reflect.ValueOf(cfg).FieldByIndex(l.index).Interface()
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s=%s: %s = %#v, want %#v", name, raw, l.key, got, want)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name  string
		path  string
		env   []string
		check func(t *testing.T, c config.Config)
	}{
		{
			name: "CDC_MONGO_URI beats the file",
			path: examplePath,
			env:  []string{"CDC_MONGO_URI=mongodb://mongo:27017/?replicaSet=rs0"},
			check: func(t *testing.T, c config.Config) {
				if c.Mongo.URI != "mongodb://mongo:27017/?replicaSet=rs0" {
					t.Errorf("mongo.uri = %q", c.Mongo.URI)
				}
				if c.Mongo.Database != "escrow" {
					t.Errorf("mongo.database = %q, want the file's escrow", c.Mongo.Database)
				}
			},
		},
		{
			name: "CDC_PG_URL beats the file",
			path: examplePath,
			env:  []string{"CDC_PG_URL=postgres://u:p@pg:5432/x"},
			check: func(t *testing.T, c config.Config) {
				if c.Postgres.URL != "postgres://u:p@pg:5432/x" {
					t.Errorf("postgres.url = %q", c.Postgres.URL)
				}
			},
		},
		{
			name: "CDC_SINK__BATCH_SIZE=500",
			path: examplePath,
			env:  []string{"CDC_SINK__BATCH_SIZE=500"},
			check: func(t *testing.T, c config.Config) {
				if c.Sink.BatchSize != 500 {
					t.Errorf("sink.batch_size = %d, want 500", c.Sink.BatchSize)
				}
				if c.Sink.BatchWait != 20*time.Millisecond {
					t.Errorf("sink.batch_wait = %s, want the default 20ms untouched", c.Sink.BatchWait)
				}
			},
		},
		{
			name: "nested key and alias together without a file",
			env:  []string{"CDC_NATS_URL=nats://nats:4222", "CDC_NATS__EMBEDDED__PORT=-1", "CDC_MONGO_DATABASE=escrow"},
			check: func(t *testing.T, c config.Config) {
				if c.NATS.URL != "nats://nats:4222" || c.NATS.Embedded.Port != -1 || c.Mongo.Database != "escrow" {
					t.Errorf("got nats.url=%q nats.embedded.port=%d mongo.database=%q", c.NATS.URL, c.NATS.Embedded.Port, c.Mongo.Database)
				}
				if c.NATS.Embedded.Host != "127.0.0.1" {
					t.Errorf("nats.embedded.host = %q, want the default", c.NATS.Embedded.Host)
				}
			},
		},
		{
			name: "CDC_TEST_ variables belong to the test suite and are ignored",
			env:  []string{"CDC_TEST_PG_URL=postgres://elsewhere/x", "CDC_TEST_MONGO_URI=mongodb://elsewhere"},
			check: func(t *testing.T, c config.Config) {
				if !reflect.DeepEqual(c, config.Default()) {
					t.Errorf("CDC_TEST_* changed the configuration: %+v", c)
				}
			},
		},
		{
			name: "other variables are ignored",
			env:  []string{"PATH=/usr/bin", "MONGO_URI=mongodb://x", "=weird", "NOEQUALS"},
			check: func(t *testing.T, c config.Config) {
				if !reflect.DeepEqual(c, config.Default()) {
					t.Errorf("non-CDC variables changed the configuration: %+v", c)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Load(tc.path, env(tc.env...))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tc.check(t, c)
		})
	}
}

func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cdc.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadErrors: every bad input is an error that says where it is.
//
// Not covered because Load accepts them today (weakly typed decoding), to
// be added when load.go rejects them: a duration without a unit
// ("max_age: 720" is 720ns), an integer that overflows its field
// ("max_conns: 4294967297" becomes 1), a float for an integer ("1.9"
// becomes 1).
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string // written to a temp file when non-empty
		path string // used when yaml is empty
		env  []string
		want []string // substrings the error must contain; "$PATH" is the file
	}{
		{name: "unknown key in a section", yaml: "sink:\n  batch_size: 10\n  bogus_key: 1\n", want: []string{"bogus_key"}},
		{name: "unknown top-level section", yaml: "sinks:\n  batch_size: 10\n", want: []string{"sinks"}},
		{name: "unknown nested key", yaml: "nats:\n  embedded:\n    prot: 4222\n", want: []string{"prot"}},
		{name: "malformed YAML", yaml: "sink:\n  batch_size: [1, 2\n", want: []string{"$PATH"}},
		{name: "tab-indented YAML", yaml: "sink:\n\tbatch_size: 1\n", want: []string{"$PATH"}},
		{name: "missing file", path: "/nonexistent/cdc.yaml", want: []string{"/nonexistent/cdc.yaml", "does not exist"}},
		{name: "bad duration in file", yaml: "sink:\n  batch_wait: soon\n", want: []string{"sink.batch_wait"}},
		{name: "bad integer in file", yaml: "sink:\n  batch_size: lots\n", want: []string{"sink.batch_size"}},
		{name: "bad bool in file", yaml: "tailer:\n  pre_images: maybe\n", want: []string{"tailer.pre_images"}},
		{name: "bad duration in env", env: []string{"CDC_TAILER__MAX_AWAIT=forever"}, want: []string{"tailer.max_await"}},
		{name: "bad integer in env", env: []string{"CDC_NATS__EMBEDDED__PORT=four"}, want: []string{"nats.embedded.port"}},
		{name: "unknown env key in a section", env: []string{"CDC_SINK__BATCHSIZE=5"}, want: []string{"batchsize"}},
		{name: "unknown env variable without section", env: []string{"CDC_BOGUS=1"}, want: []string{"CDC_BOGUS", "CDC_SINK__BATCH_SIZE"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if tc.yaml != "" {
				path = writeYAML(t, tc.yaml)
			}
			_, err := config.Load(path, env(tc.env...))
			if err == nil {
				t.Fatal("Load succeeded; want an error")
			}
			for _, w := range tc.want {
				if w == "$PATH" {
					w = path
				}
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// valid is a configuration that passes Validate for every role.
func valid() config.Config {
	c := config.Default()
	c.Mongo.URI = "mongodb://127.0.0.1:27017/?replicaSet=rs0"
	c.Mongo.Database = "escrow"
	c.Postgres.URL = "postgres://cdc@127.0.0.1:5432/escrow"
	return c
}

// TestValidate: each broken field fails the roles that need it, and the
// error names that field.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		role   config.Role
		mutate func(c *config.Config)
		field  string // "" means valid
	}{
		{"valid for run", config.RoleAll, func(*config.Config) {}, ""},
		{"missing mongo uri", config.RoleAll, func(c *config.Config) { c.Mongo.URI = "" }, "mongo.uri"},
		{"missing mongo uri, tailer", config.RoleTailer, func(c *config.Config) { c.Mongo.URI = "" }, "mongo.uri"},
		{"missing mongo uri is fine for the sink", config.RoleSink, func(c *config.Config) { c.Mongo.URI = ""; c.NATS.URL = "nats://n:4222" }, ""},
		{"a sink alone needs a nats url", config.RoleSink, func(c *config.Config) { c.NATS.URL = "" }, "nats.url"},
		{"missing mongo uri is fine for migrate", config.RolePostgres, func(c *config.Config) { c.Mongo.URI = ""; c.Mongo.Database = "" }, ""},
		{"mongo uri with wrong scheme", config.RoleAll, func(c *config.Config) { c.Mongo.URI = "http://x" }, "mongo.uri"},
		{"mongo+srv uri", config.RoleAll, func(c *config.Config) { c.Mongo.URI = "mongodb+srv://cluster.example" }, ""},
		{"missing database", config.RoleTailer, func(c *config.Config) { c.Mongo.Database = "" }, "mongo.database"},
		{"bad collection name", config.RoleAll, func(c *config.Config) { c.Mongo.Collections = []string{"users", "a$b"} }, "mongo.collections[1]"},
		{"missing postgres url", config.RoleSink, func(c *config.Config) { c.Postgres.URL = "" }, "postgres.url"},
		{"missing postgres url, migrate", config.RolePostgres, func(c *config.Config) { c.Postgres.URL = "" }, "postgres.url"},
		{"missing postgres url is fine for the tailer", config.RoleTailer, func(c *config.Config) { c.Postgres.URL = "" }, ""},
		{"postgres url with wrong scheme", config.RoleAll, func(c *config.Config) { c.Postgres.URL = "mysql://x" }, "postgres.url"},
		{"postgresql:// scheme", config.RoleAll, func(c *config.Config) { c.Postgres.URL = "postgresql://x/y" }, ""},
		{"zero max conns", config.RoleSink, func(c *config.Config) { c.Postgres.MaxConns = 0 }, "postgres.max_conns"},
		{"bad start_at", config.RoleTailer, func(c *config.Config) { c.Tailer.StartAt = "yesterday" }, "tailer.start_at"},
		{"cluster time start_at", config.RoleTailer, func(c *config.Config) { c.Tailer.StartAt = "1700000000.5" }, ""},
		{"RFC 3339 start_at", config.RoleTailer, func(c *config.Config) { c.Tailer.StartAt = "2026-01-02T03:04:05Z" }, ""},
		{"zero tailer batch", config.RoleTailer, func(c *config.Config) { c.Tailer.BatchSize = 0 }, "tailer.batch_size"},
		{"zero max_await", config.RoleTailer, func(c *config.Config) { c.Tailer.MaxAwait = 0 }, "tailer.max_await"},
		{"zero max_in_flight", config.RoleTailer, func(c *config.Config) { c.Tailer.MaxInFlight = 0 }, "tailer.max_in_flight"},
		{"negative checkpoint interval", config.RoleTailer, func(c *config.Config) { c.Tailer.CheckpointInterval = -time.Second }, "tailer.checkpoint_interval"},
		{"dedup window shorter than two checkpoints", config.RoleTailer, func(c *config.Config) {
			c.Tailer.CheckpointInterval = time.Minute
			c.NATS.DedupWindow = 90 * time.Second
		}, "nats.dedup_window"},
		{"sink consumer with a dot", config.RoleSink, func(c *config.Config) { c.Sink.Consumer = "cdc.sink" }, "sink.consumer"},
		{"sink batch too large", config.RoleSink, func(c *config.Config) { c.Sink.BatchSize = 100001 }, "sink.batch_size"},
		{"zero sink batch wait", config.RoleSink, func(c *config.Config) { c.Sink.BatchWait = 0 }, "sink.batch_wait"},
		{"short ack wait", config.RoleSink, func(c *config.Config) { c.Sink.AckWait = 5 * time.Second }, "sink.ack_wait"},
		{"stream with a space", config.RoleAll, func(c *config.Config) { c.NATS.Stream = "C D C" }, "nats.stream"},
		{"dlq equals stream", config.RoleAll, func(c *config.Config) { c.NATS.DLQStream = c.NATS.Stream }, "nats.dlq_stream"},
		{"subject prefix with two tokens", config.RoleAll, func(c *config.Config) { c.NATS.SubjectPrefix = "a.b" }, "nats.subject_prefix"},
		{"replicas 2", config.RoleAll, func(c *config.Config) { c.NATS.URL = "nats://n:4222"; c.NATS.Replicas = 2 }, "nats.replicas"},
		{"replicas 3 on the embedded server", config.RoleAll, func(c *config.Config) { c.NATS.Replicas = 3 }, "nats.replicas"},
		{"replicas 3 on a cluster", config.RoleAll, func(c *config.Config) { c.NATS.URL = "nats://n:4222"; c.NATS.Replicas = 3 }, ""},
		{"zero max age is no age limit", config.RoleAll, func(c *config.Config) { c.NATS.MaxAge = 0 }, ""},
		{"max age under a day", config.RoleAll, func(c *config.Config) { c.NATS.MaxAge = 12 * time.Hour }, "nats.max_age"},
		{"negative max age", config.RoleAll, func(c *config.Config) { c.NATS.MaxAge = -time.Hour }, "nats.max_age"},
		{"standby takeover of two checkpoint intervals", config.RoleTailer, func(c *config.Config) {
			c.Tailer.CheckpointInterval = 5 * time.Second
			c.Tailer.StandbyTakeover = 10 * time.Second
		}, "tailer.standby_takeover"},
		{"standby takeover under two getMore waits", config.RoleTailer, func(c *config.Config) {
			c.Tailer.MaxAwait = 10 * time.Second
			c.Tailer.StandbyTakeover = 15 * time.Second
		}, "tailer.standby_takeover"},
		{"update_lookup full_document", config.RoleTailer, func(c *config.Config) { c.Tailer.FullDocument = "update_lookup" }, ""},
		{"when_available full_document", config.RoleTailer, func(c *config.Config) { c.Tailer.FullDocument = "when_available" }, ""},
		{"bad full_document", config.RoleTailer, func(c *config.Config) { c.Tailer.FullDocument = "updateLookup" }, "tailer.full_document"},
		{"zero tailer failing_after", config.RoleTailer, func(c *config.Config) { c.Tailer.FailingAfter = 0 }, "tailer.failing_after"},
		{"tailer failing_after is not the sink's business", config.RoleSink, func(c *config.Config) { c.Tailer.FailingAfter = 0 }, ""},
		{"standby takeover is not the sink's business", config.RoleSink, func(c *config.Config) { c.Tailer.StandbyTakeover = 0 }, ""},
		{"empty checkpoint bucket", config.RoleAll, func(c *config.Config) { c.NATS.CheckpointBucket = "" }, "nats.checkpoint_bucket"},
		{"embedded port out of range", config.RoleAll, func(c *config.Config) { c.NATS.Embedded.Port = 70000 }, "nats.embedded.port"},
		{"bad log level", config.RolePostgres, func(c *config.Config) { c.Log.Level = "verbose" }, "log.level"},
		{"bad log format", config.RolePostgres, func(c *config.Config) { c.Log.Format = "xml" }, "log.format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			if tc.role == config.RoleSink {
				// A sink on its own needs the tailer's bus.
				c.NATS.URL = "nats://127.0.0.1:4222"
			}
			tc.mutate(&c)
			err := c.Validate(tc.role)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed; want an error naming %s", tc.field)
			}
			var ve config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T %v is not a config.ValidationError", err, err)
			}
			fields := make([]string, len(ve))
			found := false
			for i, fe := range ve {
				fields[i] = fe.Field
				found = found || fe.Field == tc.field
			}
			if !found {
				t.Errorf("fields %v do not include %s", fields, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name %s", err, tc.field)
			}
		})
	}
}

// TestValidateReportsEveryField: an operator fixes everything in one pass.
func TestValidateReportsEveryField(t *testing.T) {
	c := config.Default() // no URIs, no database
	c.Sink.BatchSize = 0
	err := c.Validate(config.RoleAll)
	var ve config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate(RoleAll) on defaults = %v; want a ValidationError", err)
	}
	for _, f := range []string{"mongo.uri", "mongo.database", "postgres.url", "sink.batch_size"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
	if !strings.Contains(err.Error(), "CDC_MONGO_URI") {
		t.Errorf("error %q does not say which variable sets mongo.uri", err)
	}
}

// TestComposeEnvironment: the CDC_* variables docker-compose.yml gives the
// cdc services are all known to the loader and make a valid configuration
// for what each service runs, with no config file.
func TestComposeEnvironment(t *testing.T) {
	const composePath = "../../docker-compose.yml"
	k := koanf.New(".")
	if err := k.Load(file.Provider(composePath), yaml.Parser()); err != nil {
		t.Fatalf("parse %s: %v", composePath, err)
	}
	// The secrets' files are made by deploy/compose-secrets.sh, as a user
	// does before `docker compose up`; here in a temporary directory.
	secrets := t.TempDir()
	gen := exec.Command("bash", "../../deploy/compose-secrets.sh")
	gen.Env = append(os.Environ(), "CDC_SECRETS_DIR="+secrets)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("deploy/compose-secrets.sh: %v\n%s", err, out)
	}
	tests := []struct {
		service string
		command string
		role    config.Role
	}{
		{"migrate", "migrate", config.RolePostgres},
		{"replicator", "run", config.RoleAll},
	}
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			svc := "services." + tc.service
			if cmd := k.Strings(svc + ".command"); !reflect.DeepEqual(cmd, []string{tc.command}) {
				t.Fatalf("%s.command = %q, want [%q]", svc, cmd, tc.command)
			}
			vars := k.Cut(svc + ".environment").All()
			if len(vars) == 0 {
				t.Fatalf("%s has no environment", svc)
			}
			var environ []string
			for name, v := range vars {
				if !strings.HasPrefix(name, "CDC_") {
					t.Errorf("%s: variable %s is not a CDC_ setting", svc, name)
				}
				value := fmt.Sprint(v)
				if secret, ok := strings.CutPrefix(value, "/run/secrets/"); ok {
					// Compose mounts secret <name> at /run/secrets/<name>
					// from the top-level secrets.<name>.file: read that.
					file := k.String("secrets." + secret + ".file")
					if file == "" {
						t.Errorf("%s: %s=%s, but the top-level secrets section has no file for %q", svc, name, value, secret)
						continue
					}
					if rest, ok := strings.CutPrefix(file, "./data/secrets/"); ok {
						value = filepath.Join(secrets, rest)
					} else {
						value = filepath.Join(filepath.Dir(composePath), file)
					}
				}
				environ = append(environ, name+"="+value)
			}
			cfg, err := config.Load("", env(environ...))
			if err != nil {
				t.Fatalf("Load with %s's environment: %v", tc.service, err)
			}
			if err := cfg.Validate(tc.role); err != nil {
				t.Fatalf("Validate with %s's environment: %v", tc.service, err)
			}
			if tc.role&config.RoleTailer != 0 && !strings.Contains(cfg.Mongo.URI, "replicaSet=") {
				t.Errorf("mongo.uri %q: inside the compose network connect with ?replicaSet=", cfg.Mongo.URI)
			}
			if tc.role&config.RoleAll != 0 && cfg.NATS.URL == "" {
				t.Errorf("nats.url is empty: the replicator would run an embedded server instead of the nats service")
			}
		})
	}
}

// TestReadmeDocumentsEveryKey: the configuration table in README.md names
// every key and its environment variable.
func TestReadmeDocumentsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			continue
		}
		key := strings.Trim(strings.TrimSpace(cells[1]), "`")
		rows[key] = cells[3]
	}
	for _, l := range leaves(t) {
		row, ok := rows[l.key]
		if !ok {
			t.Errorf("README.md configuration table has no row for %s", l.key)
			continue
		}
		if !noEnvOverride[l.key] && !strings.Contains(row, "`"+envName(l.key)+"`") {
			t.Errorf("README.md row for %s does not name %s", l.key, envName(l.key))
		}
	}
}

// TestStrictValues: values mapstructure would bend silently are refused
// with the key named.
func TestStrictValues(t *testing.T) {
	for _, tc := range []struct{ name, env, want string }{
		{"duration without unit", "CDC_NATS__MAX_AGE=720", "nats.max_age"},
		{"int32 overflow", "CDC_POSTGRES__MAX_CONNS=4294967297", "postgres.max_conns"},
		{"fraction for an integer", "CDC_SINK__BATCH_SIZE=1.5", "sink.batch_size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load("", env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %s, got %v", tc.want, err)
			}
		})
	}
	if _, err := config.Load("", env("CDC_CONFIG=/etc/cdc.yaml")); err != nil {
		t.Fatalf("CDC_CONFIG names the file and must not be an unknown key: %v", err)
	}
}

// TestTailerPointInTimeDefaults: point-in-time documents and a bounded
// failing time are the defaults (issue 10).
func TestTailerPointInTimeDefaults(t *testing.T) {
	d := config.Default()
	if d.Tailer.FullDocument != config.FullDocumentPostImage || d.Tailer.FailingAfter != time.Minute {
		t.Fatalf("tailer defaults: full_document %q, failing_after %s; want post_image, 1m", d.Tailer.FullDocument, d.Tailer.FailingAfter)
	}
}
