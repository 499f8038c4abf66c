package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// LaneConfig is one sink lane (sink.lanes): an ordered, independently
// applied group of collections with its own JetStream stream
// (<nats.stream>_<name>, subjects <nats.subject_prefix>.<name>.>), durable
// consumer (<sink.consumer>_<name>), position row and fence in Postgres.
// Collections that share transactions or foreign keys belong in one lane.
type LaneConfig struct {
	Name        string
	Collections []string
}

// laneName keeps a lane name one subject token and a valid part of a
// stream, consumer and KV key (pkg/bus.ValidLaneName is the same rule).
var laneName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// ParseLanes reads sink.lanes: each entry is "name:coll1+coll2+...". It is
// a list of strings rather than of maps so that it has an environment
// variable like every other key (CDC_SINK__LANES="ledger:accounts+ledger_entries,payments:payments").
// Empty: one lane, exactly the stream, consumer and subjects of a
// deployment without lanes. A lane name is lower-case letters, digits,
// '_' and '-' (at most 32); names are distinct; a collection is in at
// most one lane (CheckLanes, once the replicated collections are known,
// requires exactly one).
func ParseLanes(specs []string) ([]LaneConfig, error) {
	var out []LaneConfig
	names := map[string]bool{}
	owner := map[string]string{}
	for i, spec := range specs {
		name, list, ok := strings.Cut(strings.TrimSpace(spec), ":")
		name = strings.TrimSpace(name)
		if !ok {
			return nil, fmt.Errorf("entry %d %q: want name:collection+collection", i, spec)
		}
		if !laneName.MatchString(name) {
			return nil, fmt.Errorf("entry %d: lane name %q must be 1-32 of a-z, 0-9, '_', '-', starting with a letter or digit", i, name)
		}
		if names[name] {
			return nil, fmt.Errorf("entry %d: lane %q is named twice", i, name)
		}
		names[name] = true
		l := LaneConfig{Name: name}
		for _, c := range strings.Split(list, "+") {
			c = strings.TrimSpace(c)
			if c == "" {
				continue
			}
			if prev, dup := owner[c]; dup {
				return nil, fmt.Errorf("entry %d: collection %q is in lanes %q and %q; a collection belongs to exactly one lane", i, c, prev, name)
			}
			owner[c] = name
			l.Collections = append(l.Collections, c)
		}
		if len(l.Collections) == 0 {
			return nil, fmt.Errorf("entry %d: lane %q has no collections", i, name)
		}
		out = append(out, l)
	}
	return out, nil
}

// CheckLanes checks lanes against the replicated collections: each is in
// exactly one lane (ParseLanes already refused one in two), and a lane
// names no collection that is not replicated. No lanes: nothing to check.
func CheckLanes(lanes []LaneConfig, replicated []string) error {
	if len(lanes) == 0 {
		return nil
	}
	in := map[string]bool{}
	for _, l := range lanes {
		for _, c := range l.Collections {
			if !slices.Contains(replicated, c) {
				return &FieldError{Field: "sink.lanes", Reason: fmt.Sprintf("lane %q names collection %q, which is not replicated (replicated: %v)", l.Name, c, replicated)}
			}
			in[c] = true
		}
	}
	for _, c := range replicated {
		if !in[c] {
			return &FieldError{Field: "sink.lanes", Reason: fmt.Sprintf("replicated collection %q is in no lane: with lanes configured every replicated collection belongs to exactly one", c)}
		}
	}
	return nil
}
