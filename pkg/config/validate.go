package config

import (
	"fmt"
	"strings"
	"time"
)

// fieldErrors collects the FieldErrors of one section; add formats the
// reason.
type fieldErrors []*FieldError

func (e *fieldErrors) add(field, format string, args ...any) {
	*e = append(*e, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// Validate checks the fields the given role needs. Each section has its
// own validator; they run in a fixed order (what every role needs, the
// tailer's, Postgres', the sink's, the bus's, the operator sections',
// verify's, the log's), so an operator reads the same list on every run
// and fixes it in one pass.
func (c *Config) Validate(role Role) error {
	var errs fieldErrors
	if _, err := c.MemoryBytes(); err != nil {
		errs.add("memory_limit", "%v", err)
	}
	if role&RoleTailer != 0 {
		errs = append(errs, c.validateSource()...)
		errs = append(errs, c.validateTailer()...)
	}
	errs = append(errs, c.validateCollections()...)
	if role&(RoleSink|RolePostgres) != 0 {
		errs = append(errs, c.validatePostgres()...)
	}
	if role&RoleSink != 0 {
		errs = append(errs, c.validateSink()...)
	}
	if role == RoleSink && c.NATS.URL == "" {
		errs.add("nats.url", "is required for a sink running on its own: point it at the tailer's embedded server or at the NATS cluster (an embedded server in the sink would be a second, empty one)")
	}
	if role&(RoleTailer|RoleSink) != 0 {
		errs = append(errs, c.validateBus()...)
		errs = append(errs, c.validateNATSAuth()...) // connections.go
	}
	errs = append(errs, c.validateOperator()...)
	errs = append(errs, c.validateVerify(role)...) // verify.go
	errs = append(errs, c.validateLog()...)
	if len(errs) == 0 {
		return nil
	}
	return ValidationError(errs)
}

// validateSource checks the MongoDB keys the tailer needs.
func (c *Config) validateSource() fieldErrors {
	var errs fieldErrors
	if c.Mongo.URI == "" {
		errs.add("mongo.uri", "is required (or set CDC_MONGO_URI, or mongo.uri_file)")
	} else if !strings.HasPrefix(c.Mongo.URI, "mongodb://") && !strings.HasPrefix(c.Mongo.URI, "mongodb+srv://") {
		errs.add("mongo.uri", "must start with mongodb:// or mongodb+srv://")
	}
	if c.Mongo.Database == "" {
		errs.add("mongo.database", "is required (or set CDC_MONGO_DATABASE)")
	}
	return errs
}

// validateTailer checks the tailer section, and the dedup window its
// checkpoint interval needs.
func (c *Config) validateTailer() fieldErrors {
	var errs fieldErrors
	t := c.Tailer
	if _, err := ParseStartAt(t.StartAt); err != nil {
		errs.add("tailer.start_at", "%v", err)
	}
	if t.BatchSize <= 0 {
		errs.add("tailer.batch_size", "must be positive, got %d", t.BatchSize)
	}
	if t.MaxAwait <= 0 {
		errs.add("tailer.max_await", "must be positive, got %s", t.MaxAwait)
	}
	if t.MaxInFlight <= 0 {
		errs.add("tailer.max_in_flight", "must be positive, got %d", t.MaxInFlight)
	}
	if t.CheckpointInterval <= 0 {
		errs.add("tailer.checkpoint_interval", "must be positive, got %s", t.CheckpointInterval)
	}
	if beat := max(t.CheckpointInterval, t.MaxAwait); t.StandbyTakeover <= 2*beat {
		errs.add("tailer.standby_takeover", "must exceed twice tailer.checkpoint_interval and twice tailer.max_await (%s), got %s: "+
			"a standby takes over a checkpoint that has not changed for this long, and the active tailer rewrites it only that often", 2*beat, t.StandbyTakeover)
	}
	switch t.FullDocument {
	case FullDocumentPostImage, FullDocumentWhenAvailable, FullDocumentUpdateLookup:
	default:
		errs.add("tailer.full_document", "must be %s, %s or %s, got %q", FullDocumentPostImage, FullDocumentWhenAvailable, FullDocumentUpdateLookup, t.FullDocument)
	}
	if t.FailingAfter <= 0 {
		errs.add("tailer.failing_after", "must be positive, got %s", t.FailingAfter)
	}
	if c.NATS.DedupWindow < 2*t.CheckpointInterval {
		errs.add("nats.dedup_window", "must be at least twice tailer.checkpoint_interval (%s), got %s", t.CheckpointInterval, c.NATS.DedupWindow)
	}
	return errs
}

// validateCollections checks mongo.collections (every role).
func (c *Config) validateCollections() fieldErrors {
	var errs fieldErrors
	for i, coll := range c.Mongo.Collections {
		if coll == "" || strings.ContainsAny(coll, "$\x00") {
			errs.add(fmt.Sprintf("mongo.collections[%d]", i), "invalid collection name %q", coll)
		}
	}
	return errs
}

// validatePostgres checks the target's keys (the sink and migrate).
func (c *Config) validatePostgres() fieldErrors {
	var errs fieldErrors
	if c.Postgres.URL == "" {
		errs.add("postgres.url", "is required (or set CDC_PG_URL, or postgres.url_file)")
	} else if !strings.HasPrefix(c.Postgres.URL, "postgres://") && !strings.HasPrefix(c.Postgres.URL, "postgresql://") {
		errs.add("postgres.url", "must be a postgres:// URL")
	}
	if c.Postgres.MaxConns <= 0 {
		errs.add("postgres.max_conns", "must be positive, got %d", c.Postgres.MaxConns)
	}
	return errs
}

// validateSink checks the sink section.
func (c *Config) validateSink() fieldErrors {
	var errs fieldErrors
	s := c.Sink
	if s.Consumer == "" || strings.ContainsAny(s.Consumer, ". *>") {
		errs.add("sink.consumer", "must be a non-empty name without '.', ' ', '*' or '>'")
	}
	if s.BatchSize <= 0 || s.BatchSize > 100000 {
		errs.add("sink.batch_size", "must be between 1 and 100000, got %d", s.BatchSize)
	}
	if s.BatchWait <= 0 {
		errs.add("sink.batch_wait", "must be positive, got %s", s.BatchWait)
	}
	if s.AckWait < 10*time.Second {
		errs.add("sink.ack_wait", "must be at least 10s, got %s", s.AckWait)
	}
	if s.MaxWaiting <= 0 {
		errs.add("sink.max_waiting", "must be positive, got %d", s.MaxWaiting)
	}
	if s.TxnSpillAfter <= 0 || s.TxnSpillAfter >= s.AckWait {
		errs.add("sink.txn_spill_after", "must be positive and below sink.ack_wait (%s), got %s", s.AckWait, s.TxnSpillAfter)
	}
	if s.TxnTimeout <= s.TxnSpillAfter {
		errs.add("sink.txn_timeout", "must exceed sink.txn_spill_after (%s), got %s", s.TxnSpillAfter, s.TxnTimeout)
	}
	if s.FailingAfter <= 0 {
		errs.add("sink.failing_after", "must be positive, got %s", s.FailingAfter)
	}
	if s.MemberHeartbeat < 250*time.Millisecond || s.MemberHeartbeat > time.Minute {
		errs.add("sink.member_heartbeat", "must be from 250ms to 1m, got %s", s.MemberHeartbeat)
	}
	return errs
}

// validateBus checks the streams both the tailer and the sink use, and
// the lanes (the tailer publishes by lane too). nats.auth and nats.tls are
// validateNATSAuth's (connections.go).
func (c *Config) validateBus() fieldErrors {
	var errs fieldErrors
	if _, err := ParseLanes(c.Sink.Lanes); err != nil {
		errs.add("sink.lanes", "%v", err)
	}
	n := c.NATS
	if n.Stream == "" || strings.ContainsAny(n.Stream, ". *>") {
		errs.add("nats.stream", "must be a non-empty name without '.', ' ', '*' or '>'")
	}
	if n.DLQStream == "" || strings.ContainsAny(n.DLQStream, ". *>") || n.DLQStream == n.Stream {
		errs.add("nats.dlq_stream", "must be a valid stream name different from nats.stream")
	}
	if n.SubjectPrefix == "" || strings.ContainsAny(n.SubjectPrefix, ". *>") {
		errs.add("nats.subject_prefix", "must be one subject token")
	}
	if n.Replicas != 1 && n.Replicas != 3 && n.Replicas != 5 {
		errs.add("nats.replicas", "must be 1, 3 or 5, got %d", n.Replicas)
	}
	if n.URL == "" && n.Replicas != 1 {
		errs.add("nats.replicas", "the embedded server is a single node: replicas must be 1")
	}
	if n.MaxAge < 0 || (n.MaxAge > 0 && n.MaxAge < 24*time.Hour) {
		errs.add("nats.max_age", "must be 0 (no age limit) or at least 24h, got %s: age removes stream messages whether or not the sink applied them "+
			"(the discard policy does not apply to it), and the sink stops on any gap, so it must outlast the longest sink outage", n.MaxAge)
	}
	if n.CheckpointBucket == "" {
		errs.add("nats.checkpoint_bucket", "is required")
	}
	if n.URL == "" && (n.Embedded.Port < -1 || n.Embedded.Port > 65535) {
		errs.add("nats.embedded.port", "must be -1 (any free port) or 0..65535, got %d", n.Embedded.Port)
	}
	return errs
}

// validateOperator checks the snapshot and oplog sections (every role:
// they have valid defaults).
func (c *Config) validateOperator() fieldErrors {
	var errs fieldErrors
	s := c.Snapshot
	if s.BatchSize <= 0 || s.BatchSize > 100000 {
		errs.add("snapshot.batch_size", "must be between 1 and 100000, got %d", s.BatchSize)
	}
	for i, h := range s.AllowedTargets {
		if reason := badTarget(h); reason != "" {
			errs.add(fmt.Sprintf("snapshot.allowed_targets[%d]", i), "%q %s", h, reason)
		}
	}
	if !validBucket(s.ProgressBucket) {
		errs.add("snapshot.progress_bucket", "must be a non-empty bucket name of letters, digits, '-' and '_', got %q", s.ProgressBucket)
	} else if s.ProgressBucket == c.NATS.CheckpointBucket {
		errs.add("snapshot.progress_bucket", "must differ from nats.checkpoint_bucket (%q)", c.NATS.CheckpointBucket)
	}
	if s.TailerWait < 0 {
		errs.add("snapshot.tailer_wait", "must not be negative, got %s", s.TailerWait)
	}
	if c.Oplog.HeadroomWarning < 0 {
		errs.add("oplog.headroom_warning", "must not be negative, got %s", c.Oplog.HeadroomWarning)
	}
	return errs
}

// validateLog checks the log section (every role).
func (c *Config) validateLog() fieldErrors {
	var errs fieldErrors
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs.add("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		errs.add("log.format", "must be json or console, got %q", c.Log.Format)
	}
	return errs
}

// badTarget says why an allow-list entry is not a plain "host" or
// "host:port" (patterns and URLs are refused: the list is matched
// exactly), or "" when it is fine.
func badTarget(h string) string {
	switch {
	case h == "":
		return "is empty"
	case strings.ContainsAny(h, "*?{}%"):
		return "is a pattern; list exact host names (the allow-list is matched exactly)"
	case strings.ContainsAny(h, " \t/@,;=") || strings.Contains(h, "://"):
		return "must be a host name or host:port, not a URL or a list"
	}
	return ""
}

func validBucket(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
