package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/amanat/cdc/pkg/event"
)

// envAliases are the short environment names operators use most.
var envAliases = map[string]string{
	"CDC_MONGO_URI":      "mongo.uri",
	"CDC_MONGO_DATABASE": "mongo.database",
	"CDC_PG_URL":         "postgres.url",
	"CDC_NATS_URL":       "nats.url",
	"CDC_DATA_DIR":       "data_dir",
	"CDC_MEMORY_LIMIT":   "memory_limit",
}

// listKeys are the list-valued keys: their environment value is a
// comma-separated list.
var listKeys = map[string]bool{"snapshot.allowed_targets": true, "sink.lanes": true}

// Load reads the YAML file at path (optional when empty) and the
// environment given by environ (os.Environ when nil), on top of Default(),
// then reads the secret files the *_file keys name (connections.go).
// Unknown keys are errors that name the key. Load does not Validate.
func Load(path string, environ func() []string) (Config, error) {
	cfg := Default()
	k := koanf.New(".")
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return cfg, fmt.Errorf("config: file %s does not exist", path)
			}
			return cfg, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if environ == nil {
		environ = os.Environ
	}
	envMap := map[string]any{}
	for _, kv := range environ() {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "CDC_") || strings.HasPrefix(name, "CDC_TEST_") || name == "CDC_CONFIG" {
			continue // CDC_CONFIG names the file (--config); CDC_TEST_* belong to the test suite
		}
		key, err := envKey(name)
		if err != nil {
			return cfg, err
		}
		if key == "mongo.collections" || key == "sink.unparked_collections" || listKeys[key] {
			envMap[key] = splitList(value)
			continue
		}
		envMap[key] = value
	}
	if err := k.Load(confmap.Provider(envMap, "."), nil); err != nil {
		return cfg, fmt.Errorf("config: environment: %w", err)
	}
	dc := &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			strictNumbersHook,
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		TagName:          "koanf",
	}
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{DecoderConfig: dc}); err != nil {
		return cfg, fmt.Errorf("config: %s", cleanDecodeError(err))
	}
	if err := cfg.readSecretFiles(); err != nil { // connections.go
		return cfg, err
	}
	return cfg, nil
}

// envKey maps CDC_SINK__BATCH_SIZE to sink.batch_size and the aliases.
func envKey(name string) (string, error) {
	if key, ok := envAliases[name]; ok {
		return key, nil
	}
	rest := strings.TrimPrefix(name, "CDC_")
	if !strings.Contains(rest, "__") {
		return "", fmt.Errorf("config: environment variable %s: unknown; use CDC_<SECTION>__<KEY> (for example CDC_SINK__BATCH_SIZE) or one of CDC_MONGO_URI, CDC_MONGO_DATABASE, CDC_PG_URL, CDC_NATS_URL", name)
	}
	return strings.ToLower(strings.ReplaceAll(rest, "__", ".")), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// cleanDecodeError keeps mapstructure's message, which names the key, and
// drops its "decoding failed due to the following error(s):" preamble.
func cleanDecodeError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "error(s):"); i >= 0 {
		msg = strings.TrimSpace(msg[i+len("error(s):"):])
	}
	msg = strings.ReplaceAll(msg, "\n\n", "; ")
	msg = strings.ReplaceAll(msg, "\n", " ")
	return msg
}

// StartPoint is a parsed tailer.start_at.
type StartPoint struct {
	// Now starts at the current end of the oplog.
	Now bool
	// T and I are a cluster time (seconds, increment) when Now is false.
	T, I uint32
}

// ParseStartAt parses "now", "<seconds>.<increment>", a bare "<seconds>"
// or an RFC 3339 time (event.ParseClusterTime).
func ParseStartAt(s string) (StartPoint, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "now" {
		return StartPoint{Now: true}, nil
	}
	ct, _, err := event.ParseClusterTime(s)
	if err != nil {
		return StartPoint{}, fmt.Errorf(`%w (or "now")`, err)
	}
	return StartPoint{T: ct.T, I: ct.I}, nil
}

// strictNumbersHook refuses what mapstructure would accept silently: a
// duration without a unit (720 would be 720ns), an integer that does not
// fit its field (it would wrap), a fraction for an integer (truncated).
func strictNumbersHook(from, to reflect.Type, data any) (any, error) {
	if to == reflect.TypeOf(time.Duration(0)) {
		switch from.Kind() {
		case reflect.String:
			return data, nil
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64:
			if reflect.ValueOf(data).IsZero() {
				return time.Duration(0), nil
			}
			return nil, fmt.Errorf("duration %v needs a unit (for example 500ms, 10s, 720h)", data)
		}
		return data, nil
	}
	var bits int
	switch to.Kind() {
	case reflect.Int8:
		bits = 8
	case reflect.Int16:
		bits = 16
	case reflect.Int32:
		bits = 32
	case reflect.Int, reflect.Int64:
		bits = 64
	default:
		return data, nil
	}
	var n int64
	switch v := data.(type) {
	case string:
		p, err := strconv.ParseInt(strings.TrimSpace(v), 10, bits)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer that fits %d bits", v, bits)
		}
		return p, nil
	case float64:
		if v != float64(int64(v)) {
			return nil, fmt.Errorf("%v is not an integer", v)
		}
		n = int64(v)
	case float32:
		if float64(v) != float64(int64(v)) {
			return nil, fmt.Errorf("%v is not an integer", v)
		}
		n = int64(v)
	case int:
		n = int64(v)
	case int64:
		n = v
	case uint64:
		if v > math.MaxInt64 {
			return nil, fmt.Errorf("%d does not fit %d bits", v, bits)
		}
		n = int64(v)
	default:
		return data, nil
	}
	if bits < 64 && (n < -(1<<(bits-1)) || n > 1<<(bits-1)-1) {
		return nil, fmt.Errorf("%d does not fit %d bits", n, bits)
	}
	return n, nil
}
