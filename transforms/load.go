package transforms

import (
	"fmt"
	"os"
	"slices"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/transform"
)

// Load loads the mappings of cfg: those of transforms.dir, or the built-in
// set when it is empty. Every command that needs the mappings (the
// replicator, status and the operator commands) loads them here, so they
// all read the same set.
func Load(cfg *config.Config) (*transform.Set, error) {
	if cfg.Transforms.Dir != "" {
		return transform.Load(os.DirFS(cfg.Transforms.Dir), ".")
	}
	return transform.Load(Builtin, ".")
}

// Collections returns the collections cfg replicates, sorted: those of
// mongo.collections, each of which must have a mapping in set (a
// *config.FieldError names the first that has none), or, when the list is
// empty, every collection set maps.
func Collections(cfg *config.Config, set *transform.Set) ([]string, error) {
	if len(cfg.Mongo.Collections) == 0 {
		return set.Collections(), nil
	}
	for i, c := range cfg.Mongo.Collections {
		if _, ok := set.Get(c); !ok {
			return nil, &config.FieldError{Field: fmt.Sprintf("mongo.collections[%d]", i),
				Reason: fmt.Sprintf("collection %q has no transform (mapped: %v)", c, set.Collections())}
		}
	}
	out := slices.Clone(cfg.Mongo.Collections)
	slices.Sort(out)
	return out, nil
}
