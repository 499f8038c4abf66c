package e2e

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/pgtest"
	"github.com/amanat/cdc/pkg/transform"
	"github.com/amanat/cdc/transforms"
)

func mongoSessCtx(ctx context.Context, s *mongo.Session) context.Context {
	return mongo.NewSessionContext(ctx, s)
}

func pgtestShared() *pgtest.Cluster { return pgtest.Shared() }

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// toYAMLMap turns a config struct into the map an operator's YAML file
// holds, keyed by the koanf tags, durations as strings.
func toYAMLMap(v any) any {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Struct:
		out := map[string]any{}
		for i := 0; i < rv.NumField(); i++ {
			f := rv.Type().Field(i)
			tag := strings.Split(f.Tag.Get("koanf"), ",")[0]
			if tag == "" || !f.IsExported() {
				continue
			}
			out[tag] = toYAMLMap(rv.Field(i).Interface())
		}
		return out
	case reflect.Slice:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = toYAMLMap(rv.Index(i).Interface())
		}
		return out
	}
	if d, ok := v.(time.Duration); ok {
		return d.String()
	}
	return v
}

func mustTransforms(e *env, cfg config.Config) *transform.Set {
	e.t.Helper()
	set, err := transforms.Load(&cfg)
	must(e.t, err)
	return set
}
