package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/config"
)

// validFor is valid() made valid for role too: a sink on its own needs
// the tailer's bus.
func validFor(role config.Role) config.Config {
	c := valid()
	if role == config.RoleSink {
		c.NATS.URL = "nats://127.0.0.1:4222"
	}
	return c
}

// TestValidateRules: one row per validation rule. Each row breaks one
// rule of a configuration valid for the role, and Validate must report
// exactly that one FieldError, field and reason word for word (the
// reasons are what an operator reads; a refactoring must not change
// them).
func TestValidateRules(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "present")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	external := func(c *config.Config) { c.NATS.URL = "nats://n1:4222" }
	const (
		tailer   = config.RoleTailer
		sink     = config.RoleSink
		postgres = config.RolePostgres
		all      = config.RoleAll

		takeoverWhy = "a standby takes over a checkpoint that has not changed for this long, and the active tailer rewrites it only that often"
		maxAgeWhy   = "age removes stream messages whether or not the sink applied them (the discard policy does not apply to it), " +
			"and the sink stops on any gap, so it must outlast the longest sink outage"
	)
	for _, tc := range []struct {
		rule   string
		role   config.Role
		mutate func(c *config.Config)
		field  string
		reason string
	}{
		// Every role.
		{"memory_limit is a size", postgres, func(c *config.Config) { c.MemoryLimit = "lots" }, "memory_limit",
			`"lots" is not a size such as 256MiB or 1GB: strconv.ParseFloat: parsing "": invalid syntax`},
		{"memory_limit has a minimum", postgres, func(c *config.Config) { c.MemoryLimit = "10MiB" }, "memory_limit",
			"10 MiB is below the minimum of 64 MiB"},
		{"collection names", postgres, func(c *config.Config) { c.Mongo.Collections = []string{"users", "a$b"} }, "mongo.collections[1]",
			`invalid collection name "a$b"`},
		{"empty collection name", postgres, func(c *config.Config) { c.Mongo.Collections = []string{""} }, "mongo.collections[0]",
			`invalid collection name ""`},
		{"log level", postgres, func(c *config.Config) { c.Log.Level = "verbose" }, "log.level",
			`must be debug, info, warn or error, got "verbose"`},
		{"log format", postgres, func(c *config.Config) { c.Log.Format = "xml" }, "log.format",
			`must be json or console, got "xml"`},

		// The tailer.
		{"mongo.uri required", tailer, func(c *config.Config) { c.Mongo.URI = "" }, "mongo.uri",
			"is required (or set CDC_MONGO_URI, or mongo.uri_file)"},
		{"mongo.uri scheme", tailer, func(c *config.Config) { c.Mongo.URI = "http://x" }, "mongo.uri",
			"must start with mongodb:// or mongodb+srv://"},
		{"mongo.database required", tailer, func(c *config.Config) { c.Mongo.Database = "" }, "mongo.database",
			"is required (or set CDC_MONGO_DATABASE)"},
		{"tailer.start_at", tailer, func(c *config.Config) { c.Tailer.StartAt = "yesterday" }, "tailer.start_at",
			`"yesterday" is not a cluster time <seconds>.<increment> or an RFC 3339 time (or "now")`},
		{"tailer.batch_size", tailer, func(c *config.Config) { c.Tailer.BatchSize = 0 }, "tailer.batch_size",
			"must be positive, got 0"},
		{"tailer.max_await", tailer, func(c *config.Config) { c.Tailer.MaxAwait = 0 }, "tailer.max_await",
			"must be positive, got 0s"},
		{"tailer.max_in_flight", tailer, func(c *config.Config) { c.Tailer.MaxInFlight = -1 }, "tailer.max_in_flight",
			"must be positive, got -1"},
		{"tailer.checkpoint_interval", tailer, func(c *config.Config) { c.Tailer.CheckpointInterval = -time.Second; c.NATS.DedupWindow = time.Minute }, "tailer.checkpoint_interval",
			"must be positive, got -1s"},
		{"tailer.standby_takeover over two checkpoints", tailer, func(c *config.Config) {
			c.Tailer.CheckpointInterval = 5 * time.Second
			c.Tailer.StandbyTakeover = 10 * time.Second
		}, "tailer.standby_takeover", "must exceed twice tailer.checkpoint_interval and twice tailer.max_await (10s), got 10s: " + takeoverWhy},
		{"tailer.standby_takeover over two getMore waits", tailer, func(c *config.Config) {
			c.Tailer.MaxAwait = 10 * time.Second
			c.Tailer.StandbyTakeover = 15 * time.Second
		}, "tailer.standby_takeover", "must exceed twice tailer.checkpoint_interval and twice tailer.max_await (20s), got 15s: " + takeoverWhy},
		{"tailer.full_document", tailer, func(c *config.Config) { c.Tailer.FullDocument = "updateLookup" }, "tailer.full_document",
			`must be post_image, when_available or update_lookup, got "updateLookup"`},
		{"tailer.failing_after", tailer, func(c *config.Config) { c.Tailer.FailingAfter = 0 }, "tailer.failing_after",
			"must be positive, got 0s"},
		{"nats.dedup_window", tailer, func(c *config.Config) {
			c.Tailer.CheckpointInterval = time.Minute
			c.Tailer.StandbyTakeover = 3 * time.Minute
			c.NATS.DedupWindow = 90 * time.Second
		}, "nats.dedup_window", "must be at least twice tailer.checkpoint_interval (1m0s), got 1m30s"},

		// Postgres (the sink and migrate).
		{"postgres.url required", postgres, func(c *config.Config) { c.Postgres.URL = "" }, "postgres.url",
			"is required (or set CDC_PG_URL, or postgres.url_file)"},
		{"postgres.url scheme", sink, func(c *config.Config) { c.Postgres.URL = "mysql://x" }, "postgres.url",
			"must be a postgres:// URL"},
		{"postgres.max_conns", postgres, func(c *config.Config) { c.Postgres.MaxConns = 0 }, "postgres.max_conns",
			"must be positive, got 0"},

		// The sink.
		{"sink.consumer", sink, func(c *config.Config) { c.Sink.Consumer = "cdc.sink" }, "sink.consumer",
			"must be a non-empty name without '.', ' ', '*' or '>'"},
		{"sink.batch_size", sink, func(c *config.Config) { c.Sink.BatchSize = 100001 }, "sink.batch_size",
			"must be between 1 and 100000, got 100001"},
		{"sink.batch_wait", sink, func(c *config.Config) { c.Sink.BatchWait = 0 }, "sink.batch_wait",
			"must be positive, got 0s"},
		{"sink.ack_wait", sink, func(c *config.Config) { c.Sink.AckWait = 9 * time.Second; c.Sink.TxnSpillAfter = time.Second }, "sink.ack_wait",
			"must be at least 10s, got 9s"},
		{"sink.max_waiting", sink, func(c *config.Config) { c.Sink.MaxWaiting = 0 }, "sink.max_waiting",
			"must be positive, got 0"},
		{"sink.txn_spill_after below ack_wait", sink, func(c *config.Config) { c.Sink.TxnSpillAfter = 5 * time.Minute; c.Sink.TxnTimeout = time.Hour }, "sink.txn_spill_after",
			"must be positive and below sink.ack_wait (5m0s), got 5m0s"},
		{"sink.txn_spill_after positive", sink, func(c *config.Config) { c.Sink.TxnSpillAfter = 0 }, "sink.txn_spill_after",
			"must be positive and below sink.ack_wait (5m0s), got 0s"},
		{"sink.txn_timeout", sink, func(c *config.Config) { c.Sink.TxnTimeout = 5 * time.Second }, "sink.txn_timeout",
			"must exceed sink.txn_spill_after (5s), got 5s"},
		{"sink.failing_after", sink, func(c *config.Config) { c.Sink.FailingAfter = -time.Second }, "sink.failing_after",
			"must be positive, got -1s"},
		{"sink.member_heartbeat too short", sink, func(c *config.Config) { c.Sink.MemberHeartbeat = 100 * time.Millisecond }, "sink.member_heartbeat",
			"must be from 250ms to 1m, got 100ms"},
		{"sink.member_heartbeat too long", sink, func(c *config.Config) { c.Sink.MemberHeartbeat = 2 * time.Minute }, "sink.member_heartbeat",
			"must be from 250ms to 1m, got 2m0s"},
		{"nats.url for a sink alone", sink, func(c *config.Config) { c.NATS.URL = "" }, "nats.url",
			"is required for a sink running on its own: point it at the tailer's embedded server or at the NATS cluster (an embedded server in the sink would be a second, empty one)"},

		// The bus (the tailer and the sink).
		{"sink.lanes", tailer, func(c *config.Config) { c.Sink.Lanes = []string{"bad name:users"} }, "sink.lanes",
			`entry 0: lane name "bad name" must be 1-32 of a-z, 0-9, '_', '-', starting with a letter or digit`},
		{"nats.stream", all, func(c *config.Config) { c.NATS.Stream = "C D C" }, "nats.stream",
			"must be a non-empty name without '.', ' ', '*' or '>'"},
		{"nats.dlq_stream differs from nats.stream", all, func(c *config.Config) { c.NATS.DLQStream = c.NATS.Stream }, "nats.dlq_stream",
			"must be a valid stream name different from nats.stream"},
		{"nats.dlq_stream is a name", sink, func(c *config.Config) { c.NATS.DLQStream = "" }, "nats.dlq_stream",
			"must be a valid stream name different from nats.stream"},
		{"nats.subject_prefix", all, func(c *config.Config) { c.NATS.SubjectPrefix = "a.b" }, "nats.subject_prefix",
			"must be one subject token"},
		{"nats.replicas 1, 3 or 5", all, func(c *config.Config) { external(c); c.NATS.Replicas = 2 }, "nats.replicas",
			"must be 1, 3 or 5, got 2"},
		{"nats.replicas on the embedded server", all, func(c *config.Config) { c.NATS.Replicas = 3 }, "nats.replicas",
			"the embedded server is a single node: replicas must be 1"},
		{"nats.max_age at least a day", all, func(c *config.Config) { c.NATS.MaxAge = 12 * time.Hour }, "nats.max_age",
			"must be 0 (no age limit) or at least 24h, got 12h0m0s: " + maxAgeWhy},
		{"nats.max_age not negative", sink, func(c *config.Config) { c.NATS.MaxAge = -time.Hour }, "nats.max_age",
			"must be 0 (no age limit) or at least 24h, got -1h0m0s: " + maxAgeWhy},
		{"nats.checkpoint_bucket", all, func(c *config.Config) { c.NATS.CheckpointBucket = "" }, "nats.checkpoint_bucket",
			"is required"},
		{"nats.embedded.port", tailer, func(c *config.Config) { c.NATS.Embedded.Port = 70000 }, "nats.embedded.port",
			"must be -1 (any free port) or 0..65535, got 70000"},
		{"nats.auth one kind", all, func(c *config.Config) { external(c); c.NATS.Auth.Token = "t"; c.NATS.Auth.CredsFile = file }, "nats.auth",
			"set one kind of credential, got token and creds_file"},
		{"nats.auth.password with user", all, func(c *config.Config) { external(c); c.NATS.Auth.User = "cdc" }, "nats.auth.password",
			"is required with nats.auth.user (or set nats.auth.password_file)"},
		{"nats.auth.user with password", all, func(c *config.Config) { external(c); c.NATS.Auth.Password = "p" }, "nats.auth.user",
			"is required with nats.auth.password"},
		{"nats.auth.creds_file readable", all, func(c *config.Config) { external(c); c.NATS.Auth.CredsFile = missing }, "nats.auth.creds_file",
			"cannot read the file: open " + missing + ": no such file or directory"},
		{"nats.tls.ca_file a file", all, func(c *config.Config) { external(c); c.NATS.TLS.CAFile = dir }, "nats.tls.ca_file",
			dir + " is a directory, not a file"},
		{"nats.tls cert and key together", all, func(c *config.Config) { external(c); c.NATS.TLS.CertFile = file }, "nats.tls.cert_file",
			"nats.tls.cert_file and nats.tls.key_file go together: set both or neither"},
		{"embedded: no nkey or creds", all, func(c *config.Config) { c.NATS.Auth.NKeySeedFile = file }, "nats.auth",
			"the embedded server supports user/password and token only; nkey_seed_file and creds_file are for an external nats.url"},
		{"embedded: no TLS", all, func(c *config.Config) { c.NATS.TLS.ServerName = "n" }, "nats.tls",
			"applies to an external nats.url; the embedded server listens without TLS (use an external NATS cluster for TLS between hosts)"},
		{"embedded beyond loopback needs a credential", tailer, func(c *config.Config) { c.NATS.Embedded.Host = "0.0.0.0" }, "nats.embedded.host",
			`"0.0.0.0" listens beyond loopback, so the embedded server must require a credential: ` +
				"set nats.auth.user with nats.auth.password_file (or nats.auth.token_file), or listen on 127.0.0.1; " +
				"without one any host that reaches the port could forge events, purge the stream or rewrite the checkpoint"},

		// Snapshot and oplog (every role).
		{"snapshot.batch_size", postgres, func(c *config.Config) { c.Snapshot.BatchSize = 0 }, "snapshot.batch_size",
			"must be between 1 and 100000, got 0"},
		{"snapshot.allowed_targets not empty", postgres, func(c *config.Config) { c.Snapshot.AllowedTargets = []string{"db1", ""} }, "snapshot.allowed_targets[1]",
			`"" is empty`},
		{"snapshot.allowed_targets no pattern", postgres, func(c *config.Config) { c.Snapshot.AllowedTargets = []string{"*.internal"} }, "snapshot.allowed_targets[0]",
			`"*.internal" is a pattern; list exact host names (the allow-list is matched exactly)`},
		{"snapshot.allowed_targets no URL", postgres, func(c *config.Config) { c.Snapshot.AllowedTargets = []string{"postgres://db1/x"} }, "snapshot.allowed_targets[0]",
			`"postgres://db1/x" must be a host name or host:port, not a URL or a list`},
		{"snapshot.progress_bucket a name", postgres, func(c *config.Config) { c.Snapshot.ProgressBucket = "a.b" }, "snapshot.progress_bucket",
			`must be a non-empty bucket name of letters, digits, '-' and '_', got "a.b"`},
		{"snapshot.progress_bucket not the checkpoints'", postgres, func(c *config.Config) { c.Snapshot.ProgressBucket = c.NATS.CheckpointBucket }, "snapshot.progress_bucket",
			`must differ from nats.checkpoint_bucket ("cdc_checkpoints")`},
		{"snapshot.tailer_wait", postgres, func(c *config.Config) { c.Snapshot.TailerWait = -time.Second }, "snapshot.tailer_wait",
			"must not be negative, got -1s"},
		{"oplog.headroom_warning", postgres, func(c *config.Config) { c.Oplog.HeadroomWarning = -time.Second }, "oplog.headroom_warning",
			"must not be negative, got -1s"},

		// Verify (every role; MongoDB for a sink alone).
		{"verify.continuous.rate", postgres, func(c *config.Config) { c.Verify.Continuous.Rate = -1 }, "verify.continuous.rate",
			"must be from 0 (off) to 100000 documents per second, got -1"},
		{"verify.continuous.recheck", postgres, func(c *config.Config) { c.Verify.Continuous.Recheck = time.Millisecond }, "verify.continuous.recheck",
			"must be from 1s to 1h, got 1ms"},
		{"verify needs mongo.uri on a sink alone", sink, func(c *config.Config) { c.Verify.Continuous.Rate = 1; c.Mongo.URI = "" }, "mongo.uri",
			"is required with verify.continuous.rate > 0: the verifier reads MongoDB (or set CDC_MONGO_URI, or mongo.uri_file)"},
		{"verify needs mongo.database on a sink alone", sink, func(c *config.Config) { c.Verify.Continuous.Rate = 1; c.Mongo.Database = "" }, "mongo.database",
			"is required with verify.continuous.rate > 0: the verifier reads MongoDB (or set CDC_MONGO_DATABASE)"},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			c := validFor(tc.role)
			if err := c.Validate(tc.role); err != nil {
				t.Fatalf("the base configuration is invalid for role %d: %v", tc.role, err)
			}
			tc.mutate(&c)
			err := c.Validate(tc.role)
			var ve config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate(role %d) = %v (%T); want a ValidationError naming %s", tc.role, err, err, tc.field)
			}
			if len(ve) != 1 {
				t.Fatalf("Validate(role %d) reported %d errors, want only %s: %v", tc.role, len(ve), tc.field, err)
			}
			got := ve[0]
			if got.Field != tc.field {
				t.Fatalf("field %q, want %q (%v)", got.Field, tc.field, err)
			}
			if got.Reason != tc.reason {
				t.Fatalf("%s: reason\n  %q\nwant\n  %q", tc.field, got.Reason, tc.reason)
			}
			if want := "config: " + tc.field + ": " + got.Reason; err.Error() != want {
				t.Fatalf("message %q, want %q", err.Error(), want)
			}
		})
	}
}

// TestValidateOrder: the errors of one Validate come in a fixed order
// (every role's, then the tailer's, the sink's, the bus's, the operator
// sections', verify's, the log's), so an operator reads the same list on
// every run.
func TestValidateOrder(t *testing.T) {
	c := config.Default() // no URIs, no database
	c.MemoryLimit = "1KiB"
	c.Mongo.Collections = []string{"$x"}
	c.Tailer.BatchSize = 0
	c.Sink.BatchSize = 0
	c.NATS.Stream = ""
	c.NATS.Auth.User = "u"
	c.Snapshot.BatchSize = 0
	c.Verify.Continuous.Rate = -1
	c.Log.Format = "xml"
	err := c.Validate(config.RoleAll)
	var ve config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v; want a ValidationError", err)
	}
	var got []string
	for _, fe := range ve {
		got = append(got, fe.Field)
	}
	want := []string{
		"memory_limit",
		"mongo.uri", "mongo.database", "tailer.batch_size",
		"mongo.collections[0]",
		"postgres.url",
		"sink.batch_size",
		"nats.stream", "nats.auth.password",
		"snapshot.batch_size",
		"verify.continuous.rate",
		"log.format",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("fields in order\n  %v\nwant\n  %v", got, want)
	}
}
