package replay

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/amanat/cdc/pkg/redact"
)

// Target is one PostgreSQL host a connection string can reach.
type Target struct {
	Host string
	Port uint16
}

func (t Target) String() string {
	if strings.HasPrefix(t.Host, "/") {
		return t.Host // unix socket directory
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

// Targets parses url the way pgx connects (libpq rules: defaults and PG*
// variables apply) and returns every host it may reach: the primary and
// the fallbacks of a multi-host string.
func Targets(url string) ([]Target, error) {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("postgres url %s: %w", redact.URL(url), err), url)
	}
	out := []Target{{Host: cfg.Host, Port: cfg.Port}}
	for _, f := range cfg.Fallbacks {
		t := Target{Host: f.Host, Port: f.Port}
		dup := false
		for _, o := range out {
			dup = dup || o == t
		}
		if !dup {
			out = append(out, t)
		}
	}
	return out, nil
}

// TargetRefusedError says which hosts are neither allowed nor confirmed.
type TargetRefusedError struct {
	Refused []Target
}

func (e *TargetRefusedError) Error() string {
	names := make([]string, len(e.Refused))
	for i, t := range e.Refused {
		names[i] = t.String()
	}
	return fmt.Sprintf("%v: PostgreSQL target %s is not in snapshot.allowed_targets; add it there, or confirm this run with --yes %s",
		ErrTargetRefused, strings.Join(names, ", "), e.Refused[0].Host)
}

func (e *TargetRefusedError) Unwrap() error { return ErrTargetRefused }

// CheckTarget allows a run against url only if every host it may reach
// is listed in allowed or named by one of confirmed (the --yes values).
// An entry "host" allows that host on any port, "host:port" only that
// port. Host names compare exactly, ignoring case: "db" does not allow
// "db.prod", and "prod" does not allow "prod-replica" (a whitelist, never
// a substring match).
func CheckTarget(url string, allowed, confirmed []string) ([]Target, error) {
	targets, err := Targets(url)
	if err != nil {
		return nil, err
	}
	ok := append(append([]string(nil), allowed...), confirmed...)
	var refused []Target
	for _, t := range targets {
		if !matchesAny(t, ok) {
			refused = append(refused, t)
		}
	}
	if len(refused) > 0 {
		return targets, &TargetRefusedError{Refused: refused}
	}
	return targets, nil
}

func matchesAny(t Target, entries []string) bool {
	for _, e := range entries {
		host, port := splitEntry(strings.TrimSpace(e))
		if host == "" || !strings.EqualFold(host, t.Host) {
			continue
		}
		if port == "" || port == strconv.Itoa(int(t.Port)) {
			return true
		}
	}
	return false
}

// splitEntry splits "host:port" or "[v6]:port"; a bare host (including a
// bare IPv6 address) has no port.
func splitEntry(e string) (host, port string) {
	if h, p, err := net.SplitHostPort(e); err == nil {
		return h, p
	}
	return strings.Trim(e, "[]"), ""
}
