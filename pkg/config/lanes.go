package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
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
	// Group, Part and Parts describe a lane split by a hash of the
	// document id ("name/N:collections", ParseLanes): the group's N lanes
	// are <group>_0 ... <group>_<N-1>, and this is part Part. Unsplit:
	// Group is Name, Parts 1.
	Group       string
	Part, Parts int
}

// MaxLaneParts bounds N in "name/N:collections".
const MaxLaneParts = 64

// laneName keeps a lane name one subject token and a valid part of a
// stream, consumer and KV key (pkg/bus.ValidLaneName is the same rule).
var laneName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// ParseLanes reads sink.lanes: each entry is "name:coll1+coll2+..." or
// "name/N:coll1+coll2+..." (a lane split by a hash of the document id into
// N lanes name_0 ... name_<N-1>: a document's changes outside
// transactions always go to one of them, so its order holds; a
// transaction goes whole to the lane of its first event). It is
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
		head, list, ok := strings.Cut(strings.TrimSpace(spec), ":")
		if !ok {
			return nil, fmt.Errorf("entry %d %q: want name:collection+collection (or name/N:... to split by document id)", i, spec)
		}
		name, parts, err := laneHead(strings.TrimSpace(head))
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		var colls []string
		for _, c := range strings.Split(list, "+") {
			c = strings.TrimSpace(c)
			if c == "" {
				continue
			}
			if prev, dup := owner[c]; dup {
				return nil, fmt.Errorf("entry %d: collection %q is in lanes %q and %q; a collection belongs to exactly one lane", i, c, prev, name)
			}
			owner[c] = name
			colls = append(colls, c)
		}
		if len(colls) == 0 {
			return nil, fmt.Errorf("entry %d: lane %q has no collections", i, name)
		}
		for p := range parts {
			l := LaneConfig{Name: name, Collections: colls, Group: name, Part: p, Parts: parts}
			if parts > 1 {
				l.Name = fmt.Sprintf("%s_%d", name, p)
			}
			if !laneName.MatchString(l.Name) {
				return nil, fmt.Errorf("entry %d: lane name %q is longer than 32", i, l.Name)
			}
			if names[l.Name] {
				return nil, fmt.Errorf("entry %d: lane %q is named twice", i, l.Name)
			}
			names[l.Name] = true
			out = append(out, l)
		}
	}
	return out, nil
}

// laneHead reads "name" or "name/N".
func laneHead(head string) (name string, parts int, err error) {
	name, n, split := strings.Cut(head, "/")
	name = strings.TrimSpace(name)
	if !laneName.MatchString(name) {
		return "", 0, fmt.Errorf("lane name %q must be 1-32 of a-z, 0-9, '_', '-', starting with a letter or digit", name)
	}
	if !split {
		return name, 1, nil
	}
	parts, err = strconv.Atoi(strings.TrimSpace(n))
	if err != nil || parts < 2 || parts > MaxLaneParts {
		return "", 0, fmt.Errorf("lane %q: split %q must be a number of lanes from 2 to %d", name, n, MaxLaneParts)
	}
	return name, parts, nil
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
