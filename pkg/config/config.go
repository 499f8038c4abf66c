// Package config holds the replicator's typed configuration: a YAML file
// overlaid by environment variables, with defaults for everything that can
// have one and validation that names the bad field and why.
//
// Precedence, lowest first: Default(), the YAML file, the environment.
// Environment variables: the short aliases CDC_MONGO_URI, CDC_MONGO_DATABASE,
// CDC_PG_URL and CDC_NATS_URL, and for every other key CDC_<SECTION>__<KEY>
// with a double underscore between levels (CDC_SINK__BATCH_SIZE=500).
//
// Connection strings hold credentials: print them only through
// redact.URL (the String methods here do). Every secret key X (mongo.uri,
// postgres.url, nats.url, nats.auth.password, nats.auth.token) has a key
// X_file naming a file that holds it instead, CDC_..._FILE in the
// environment; Load reads those files (connections.go, docs/tls-auth.md).
package config

import (
	"fmt"
	"strings"
	"time"
)

// Config is the whole configuration of one replicator process.
type Config struct {
	// Mongo is the source replica set.
	Mongo MongoConfig `koanf:"mongo"`
	// Postgres is the target database.
	Postgres PostgresConfig `koanf:"postgres"`
	// NATS is the event bus between tailer and sink.
	NATS NATSConfig `koanf:"nats"`
	// Tailer reads the change stream and publishes events.
	Tailer TailerConfig `koanf:"tailer"`
	// Sink applies events to Postgres.
	Sink SinkConfig `koanf:"sink"`
	// Transforms selects the per-collection mappings.
	Transforms TransformsConfig `koanf:"transforms"`
	// Log configures structured logging.
	Log LogConfig `koanf:"log"`
	// HTTP serves /metrics, /healthz and /readyz.
	HTTP HTTPConfig `koanf:"http"`
	// Snapshot configures `cdc snapshot` and the `cdc replay` commands.
	Snapshot SnapshotConfig `koanf:"snapshot"`
	// Oplog configures the oplog-window (headroom) checks.
	Oplog OplogConfig `koanf:"oplog"`
	// Verify configures verification inside the daemon (verify.go).
	Verify VerifyConfig `koanf:"verify"`
	// DataDir is where local state lives (the embedded NATS store).
	// Default "./data".
	DataDir string `koanf:"data_dir"`
	// MemoryLimit bounds the process's memory (Go heap, the embedded NATS
	// server's caches, buffers): it becomes the Go runtime's soft memory
	// limit (runtime/debug.SetMemoryLimit) unless GOMEMLIMIT is set, and
	// the in-flight byte budgets of the tailer and the sink are derived
	// from it (MemoryBudget). Sizes such as "256MiB" or "1GB"; "0" turns
	// the limit off. Default "200MiB": a 1,000,000-event backlog drained
	// with the embedded server peaked at 221 MB RSS under 192MiB, 285 MB
	// under 256MiB and 438 MB without a limit; the live heap stayed under
	// ~90 MB, the rest was garbage the collector had no reason to reclaim.
	MemoryLimit string `koanf:"memory_limit"`
}

// MongoConfig is the change-stream source.
type MongoConfig struct {
	// URI is the MongoDB connection string of the replica set. Required
	// (here or through URIFile). TLS and authentication are the URI's own
	// options (tls=true, tlsCAFile, tlsCertificateKeyFile, authSource,
	// authMechanism): see docs/tls-auth.md.
	URI string `koanf:"uri"`
	// URIFile names a file whose content is URI (a mounted secret). Setting
	// both is an error. Default "".
	URIFile string `koanf:"uri_file"`
	// Database is the source database watched by the tailer. Required.
	Database string `koanf:"database"`
	// Collections are the collections to replicate. Default: every
	// collection that has a transform.
	Collections []string `koanf:"collections"`
}

// PostgresConfig is the replication target.
type PostgresConfig struct {
	// URL is the PostgreSQL connection string. Required for the sink
	// (here or through URLFile). TLS is the URL's sslmode, sslrootcert,
	// sslcert and sslkey; a password may come from PGPASSFILE or
	// ~/.pgpass instead (docs/tls-auth.md).
	URL string `koanf:"url"`
	// URLFile names a file whose content is URL. Setting both is an
	// error. Default "".
	URLFile string `koanf:"url_file"`
	// MaxConns caps the sink's connection pool. Default 4; with sink
	// lanes the pool has at least one connection per lane plus one.
	MaxConns int32 `koanf:"max_conns"`
}

// NATSConfig selects an external NATS cluster or the embedded server and
// describes the streams the program declares.
type NATSConfig struct {
	// URL of an external NATS server or cluster (comma-separated). Empty
	// runs the embedded JetStream server. Default "".
	URL string `koanf:"url"`
	// URLFile names a file whose content is URL. Setting both is an
	// error. Default "".
	URLFile string `koanf:"url_file"`
	// Auth is how this process authenticates to NATS; with the embedded
	// server it is also the credential the server requires.
	Auth NATSAuthConfig `koanf:"auth"`
	// TLS verifies an external server and presents a client certificate.
	TLS NATSTLSConfig `koanf:"tls"`
	// Embedded configures the in-process server used when URL is empty.
	Embedded EmbeddedNATSConfig `koanf:"embedded"`
	// Stream is the JetStream stream holding change events. Default "CDC".
	Stream string `koanf:"stream"`
	// SubjectPrefix is the first subject token of change events
	// (<prefix>.<db>.<collection>). Default "cdc".
	SubjectPrefix string `koanf:"subject_prefix"`
	// DLQStream is the dead-letter stream. Default "CDC_DLQ".
	DLQStream string `koanf:"dlq_stream"`
	// Replicas of each stream: 1 single node, 3 on a cluster. Default 1.
	Replicas int `koanf:"replicas"`
	// DedupWindow is how long JetStream remembers Nats-Msg-Id values.
	// It must cover the tailer's checkpoint interval plus a restart or a
	// standby's takeover (tailer.standby_takeover, 10s by default); the
	// server keeps ~100-275 bytes per id for the whole window (a heap
	// profile of an embedded server showed 16 MB for ~100,000 ids), so a
	// long window at a high rate costs memory. Copies older than the
	// window are skipped by the sink's version guard. Default 20s.
	DedupWindow time.Duration `koanf:"dedup_window"`
	// MaxAge is how long events stay in the stream: 0 (no age limit) or
	// at least 24h. Age removes messages whether or not the sink applied
	// them (the discard policy does not apply to it) and the sink stops
	// loudly on any gap, so it must exceed the longest sink outage. Keep it
	// longer than the oplog window too, so replay can come from the stream.
	// Default 720h.
	MaxAge time.Duration `koanf:"max_age"`
	// MaxBytes caps the stream size; -1 is unlimited. A full stream
	// refuses new events (discard policy new): the tailer retries from its
	// checkpoint, MongoDB's oplog being the buffer, until the sink frees
	// space or the cap is raised; nothing unapplied is discarded.
	// Default -1.
	MaxBytes int64 `koanf:"max_bytes"`
	// CheckpointBucket is the KV bucket holding tailer checkpoints.
	// Default "cdc_checkpoints".
	CheckpointBucket string `koanf:"checkpoint_bucket"`
}

// EmbeddedNATSConfig configures the in-process JetStream server.
type EmbeddedNATSConfig struct {
	// Host to listen on. Default "127.0.0.1". Any host but loopback
	// (127.0.0.0/8, ::1, localhost) requires nats.auth user/password or
	// token: the server refuses clients without it.
	Host string `koanf:"host"`
	// Port to listen on; -1 picks a free port. Default 4222.
	Port int `koanf:"port"`
	// StoreDir is the JetStream file store. Default "<data_dir>/nats".
	StoreDir string `koanf:"store_dir"`
}

// NATSAuthConfig is one NATS client credential: user and password, a
// token, an NKey seed file or a creds file (user JWT and seed); at most one
// kind. Password and token may come from a file (PasswordFile, TokenFile).
// The embedded server supports user/password and token: it then requires
// that credential from every client, and this process presents it.
type NATSAuthConfig struct {
	// User is the user name, with Password or PasswordFile. Default "".
	User string `koanf:"user"`
	// Password of User. Default "".
	Password string `koanf:"password"`
	// PasswordFile names a file whose content is Password. Default "".
	PasswordFile string `koanf:"password_file"`
	// Token is an authorization token. Default "".
	Token string `koanf:"token"`
	// TokenFile names a file whose content is Token. Default "".
	TokenFile string `koanf:"token_file"`
	// NKeySeedFile is an NKey user seed file ("SU..."): the client signs
	// the server's nonce with it. External servers only. Default "".
	NKeySeedFile string `koanf:"nkey_seed_file"`
	// CredsFile is a creds file (user JWT and NKey seed, as written by
	// nsc), for servers in operator (decentralized JWT) mode; re-read on
	// every reconnect. External servers only. Default "".
	CredsFile string `koanf:"creds_file"`
}

// NATSTLSConfig is the client side of TLS to an external NATS server.
// Setting any field, or a tls:// URL, turns TLS on; the server's
// certificate is always verified (against CAFile, else the system roots).
type NATSTLSConfig struct {
	// CAFile is a PEM bundle of the CAs that sign the server's
	// certificate. Default "" (the system roots).
	CAFile string `koanf:"ca_file"`
	// CertFile and KeyFile are the client certificate and its key (PEM),
	// for servers that verify clients. Both or neither. Default "".
	CertFile string `koanf:"cert_file"`
	// KeyFile is CertFile's private key. Default "".
	KeyFile string `koanf:"key_file"`
	// ServerName is the name the server's certificate must carry when it
	// differs from the URL's host (e.g. connecting by IP). Default "" (the
	// URL's host).
	ServerName string `koanf:"server_name"`
}

// Enabled reports whether any TLS setting is present.
func (t NATSTLSConfig) Enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// TailerConfig tunes the change-stream reader.
type TailerConfig struct {
	// StartAt is where a tailer without a checkpoint starts: "now", a
	// cluster time "<seconds>.<increment>", or an RFC 3339 time.
	// Ignored when a checkpoint exists. Default "now".
	StartAt string `koanf:"start_at"`
	// BatchSize of change-stream getMore replies. Default 1000.
	BatchSize int32 `koanf:"batch_size"`
	// MaxAwait is how long one getMore waits for new events. Default 1s.
	MaxAwait time.Duration `koanf:"max_await"`
	// MaxInFlight bounds unacknowledged async publishes. Default 4096.
	MaxInFlight int `koanf:"max_in_flight"`
	// CheckpointInterval is how often the acknowledged resume token is
	// persisted. Default 1s.
	CheckpointInterval time.Duration `koanf:"checkpoint_interval"`
	// PreImages asks for pre-images (fullDocumentBeforeChange:
	// whenAvailable); collections must have changeStreamPreAndPostImages
	// enabled (checked at start). Default false.
	PreImages bool `koanf:"pre_images"`
	// FullDocument is how update events carry the document:
	//   post_image      the document as it was right after the update
	//                   (fullDocument: required; the stream fails rather
	//                   than send an update without it),
	//   when_available  the same, or no document when the image is gone,
	//   update_lookup   the document as it is when the event is read
	//                   (possibly after later changes; see the README).
	// post_image and when_available need changeStreamPreAndPostImages on
	// every replicated collection (MongoDB 6.0+; the tailer refuses to
	// start without it and prints the collMod to run). Default post_image.
	FullDocument string `koanf:"full_document"`
	// FailingAfter is how long the tailer may retry errors before it turns
	// unready, logs at error level and sets cdc_tailer_failing. Default 1m.
	FailingAfter time.Duration `koanf:"failing_after"`
	// Instance names this process in the checkpoint's owner
	// ("<instance>:<pid>:<nonce>"), which a standby tailer reports.
	// Default "" (the host name).
	Instance string `koanf:"instance"`
	// StandbyTakeover is how long a checkpoint written by another tailer
	// must stay unchanged before a standby takes it over (the holder
	// rewrites it every checkpoint_interval). It must exceed twice
	// checkpoint_interval and twice max_await. The holder stops publishing
	// once its own lease, four fifths of this from its last successful
	// write, runs out without a renewal. Default 10s.
	StandbyTakeover time.Duration `koanf:"standby_takeover"`
}

// tailer.full_document values.
const (
	FullDocumentPostImage     = "post_image"
	FullDocumentWhenAvailable = "when_available"
	FullDocumentUpdateLookup  = "update_lookup"
)

// SinkConfig tunes the Postgres applier.
type SinkConfig struct {
	// Consumer is the durable JetStream consumer name. Default "cdc-sink".
	Consumer string `koanf:"consumer"`
	// BatchSize is the most events applied in one Postgres transaction.
	// Default 1000.
	BatchSize int `koanf:"batch_size"`
	// BatchWait is how long, in all, a partial batch waits for more
	// events (decoding those delivered already does not count, so a
	// backlog applies in full batches). Default 20ms.
	BatchWait time.Duration `koanf:"batch_wait"`
	// AckWait is the consumer's redelivery timeout. Default 5m.
	AckWait time.Duration `koanf:"ack_wait"`
	// UnparkedCollections keep applying a document's later events after
	// one of them is dead-lettered; every other collection parks them
	// until an operator retries or drops the dead letter. Default [].
	UnparkedCollections []string `koanf:"unparked_collections"`
	// Instance names this process in the consumer's fence, as standbys
	// report the holder. Default "" (host:pid and a random nonce).
	Instance string `koanf:"instance"`
	// MaxWaiting bounds the events set aside waiting for a parent (policy
	// wait); a wait past it is dead-lettered. Default 100000.
	MaxWaiting int `koanf:"max_waiting"`
	// TxnSpillAfter is how long the events of an incomplete Mongo
	// transaction stay in memory before they are set aside in Postgres.
	// Default 5s.
	TxnSpillAfter time.Duration `koanf:"txn_spill_after"`
	// TxnTimeout is how long a Mongo transaction may stay incomplete
	// before it is dead-lettered whole. Default 10m.
	TxnTimeout time.Duration `koanf:"txn_timeout"`
	// FailingAfter is how long batches may fail with retryable errors
	// before the sink turns unready and logs at error level. Default 1m.
	FailingAfter time.Duration `koanf:"failing_after"`
	// Lanes split the sink's work into lanes, "name:coll1+coll2" each, or
	// "name/N:coll1+coll2" for N lanes split by document id (lanes.go,
	// ParseLanes). Default [] (one lane).
	Lanes []string `koanf:"lanes"`
	// MemberHeartbeat is how often a sink instance with lanes renews its
	// key in the members bucket; a key expires after three missed beats
	// and the instance's lanes move. Default 2s; 250ms to 1m.
	MemberHeartbeat time.Duration `koanf:"member_heartbeat"`
}

// TransformsConfig selects the mappings.
type TransformsConfig struct {
	// Dir holds one YAML mapping per collection. Empty uses the
	// built-in money-core set. Default "".
	Dir string `koanf:"dir"`
}

// LogConfig configures zap.
type LogConfig struct {
	// Level: debug, info, warn, error. Default info.
	Level string `koanf:"level"`
	// Format: json or console. Default json.
	Format string `koanf:"format"`
}

// HTTPConfig configures the operations endpoint.
type HTTPConfig struct {
	// Addr serves /metrics, /healthz and /readyz; empty disables it.
	// Default "127.0.0.1:9464": loopback only, so that an endpoint without
	// TLS or authentication is not reachable from other hosts by default.
	// A scraper on another host needs an explicit address (":9464" for
	// every interface), and then WebConfigFile (docs/http.md).
	Addr string `koanf:"addr"`
	// WebConfigFile is a Prometheus web configuration file
	// (github.com/prometheus/exporter-toolkit's web.config.file format:
	// tls_server_config, basic_auth_users with bcrypt hashes,
	// http_server_config). It is read at start-up (an invalid file is a
	// start-up error) and again for every request and TLS handshake, so
	// certificates and passwords rotate without a restart. Empty: plain
	// HTTP with no authentication. Default "".
	WebConfigFile string `koanf:"web_config_file"`
	// Pprof serves the Go runtime's profiles under /debug/pprof/ on Addr
	// (heap, CPU, goroutines: what a memory or CPU investigation needs).
	// They reveal internals (command line, stacks): keep Addr loopback or
	// behind WebConfigFile's authentication when on. Default false.
	Pprof bool `koanf:"pprof"`
}

// SnapshotConfig configures the operator commands that load or re-load
// data: `cdc snapshot` and `cdc replay`.
type SnapshotConfig struct {
	// BatchSize is how many documents one snapshot find returns (and one
	// progress record covers), and how many events one `replay stream`
	// Postgres transaction applies. Default 1000.
	BatchSize int `koanf:"batch_size"`
	// AllowedTargets are the PostgreSQL hosts ("host" or "host:port",
	// exact and case-insensitive: a whitelist, never a substring match)
	// that snapshot and replay may write to. Any other target must be
	// confirmed with --yes <host>. Default [] (always confirm).
	AllowedTargets []string `koanf:"allowed_targets"`
	// ProgressBucket is the JetStream key-value bucket holding snapshot
	// progress (cluster time, last _id done, counts per collection).
	// Default "cdc_snapshots".
	ProgressBucket string `koanf:"progress_bucket"`
	// TailerWait bounds how long a snapshot batch of a collection that
	// references other collections waits for the tailer's checkpoint to
	// pass the batch's read time, so that a parent created during the
	// scan reaches the stream before the child that references it. 0
	// disables the wait. Default 5m.
	TailerWait time.Duration `koanf:"tailer_wait"`
}

// OplogConfig configures the oplog-window checks.
type OplogConfig struct {
	// HeadroomWarning: warn when the tailer's checkpoint would fall off
	// the oplog within this long (headroom = checkpoint - oldest oplog
	// entry). 0 warns only when it has fallen off. Default 6h.
	HeadroomWarning time.Duration `koanf:"headroom_warning"`
}

// Default returns the configuration with every default filled in.
func Default() Config {
	return Config{
		Postgres: PostgresConfig{MaxConns: 4},
		NATS: NATSConfig{
			Embedded:         EmbeddedNATSConfig{Host: "127.0.0.1", Port: 4222},
			Stream:           "CDC",
			SubjectPrefix:    "cdc",
			DLQStream:        "CDC_DLQ",
			Replicas:         1,
			DedupWindow:      20 * time.Second,
			MaxAge:           720 * time.Hour,
			MaxBytes:         -1,
			CheckpointBucket: "cdc_checkpoints",
		},
		Tailer: TailerConfig{
			StartAt:            "now",
			BatchSize:          1000,
			MaxAwait:           time.Second,
			MaxInFlight:        4096,
			CheckpointInterval: time.Second,
			StandbyTakeover:    10 * time.Second,
			FullDocument:       FullDocumentPostImage,
			FailingAfter:       time.Minute,
		},
		Sink: SinkConfig{
			Consumer:  "cdc-sink",
			BatchSize: 1000,
			BatchWait: 20 * time.Millisecond,
			AckWait:   5 * time.Minute,

			MaxWaiting:    100000,
			TxnSpillAfter: 5 * time.Second,
			TxnTimeout:    10 * time.Minute,
			FailingAfter:  time.Minute,
			Lanes:         []string{},

			MemberHeartbeat: 2 * time.Second,
		},
		Log:  LogConfig{Level: "info", Format: "json"},
		HTTP: HTTPConfig{Addr: "127.0.0.1:9464"},
		Snapshot: SnapshotConfig{
			BatchSize:      1000,
			AllowedTargets: []string{},
			ProgressBucket: "cdc_snapshots",
			TailerWait:     5 * time.Minute,
		},
		Oplog:       OplogConfig{HeadroomWarning: 6 * time.Hour},
		Verify:      VerifyConfig{Continuous: ContinuousVerifyConfig{Recheck: 30 * time.Second}},
		DataDir:     "./data",
		MemoryLimit: "200MiB",
	}
}

// Role says which parts of the configuration a command needs.
type Role int

const (
	// RoleTailer needs Mongo and NATS.
	RoleTailer Role = 1 << iota
	// RoleSink needs Postgres and NATS.
	RoleSink
	// RolePostgres needs only Postgres (migrate).
	RolePostgres
)

// RoleAll is what `cdc run` needs.
const RoleAll = RoleTailer | RoleSink

// FieldError names one invalid configuration key and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("config: %s: %s", e.Field, e.Reason) }

// ValidationError is every FieldError found, so an operator fixes them in
// one pass.
type ValidationError []*FieldError

func (v ValidationError) Error() string {
	msgs := make([]string, len(v))
	for i, e := range v {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// NATSStoreDir is the embedded server's store directory.
func (c *Config) NATSStoreDir() string {
	if c.NATS.Embedded.StoreDir != "" {
		return c.NATS.Embedded.StoreDir
	}
	return strings.TrimRight(c.DataDir, "/") + "/nats"
}
