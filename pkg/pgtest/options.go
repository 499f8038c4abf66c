package pgtest

import (
	"fmt"
	"regexp"
	"sort"
	"time"
)

// EnvURL names the environment variable that points the harness at an
// existing server instead of starting one: a postgres:// URL of a role that
// may CREATE and DROP DATABASE.
const EnvURL = "CDC_TEST_PG_URL"

// EnvBinDir names the environment variable that overrides where the
// PostgreSQL binaries are looked for (same meaning as Options.BinDir).
const EnvBinDir = "CDC_TEST_PG_BIN"

// Options configures Start. The zero value is what tests want.
type Options struct {
	// Fsync turns fsync and full_page_writes on. Default false: tests do not
	// care about surviving an operating-system crash; benchmarks set it.
	// synchronous_commit is on either way.
	Fsync bool

	// Managed ignores CDC_TEST_PG_URL and always starts a server from local
	// binaries. Tests that stop or crash the server set it. Default false.
	Managed bool

	// BinDir is the directory holding initdb and postgres. Default: the
	// CDC_TEST_PG_BIN environment variable, else the highest PostgreSQL
	// version found under /usr/lib/postgresql/*/bin or on PATH, taking initdb
	// and postgres from the same directory.
	BinDir string

	// RunAsUser is the operating-system user that runs initdb and postgres
	// when the test process is root (PostgreSQL refuses to run as root).
	// Default "nobody". Ignored when not running as root.
	RunAsUser string

	// Settings are extra server settings passed as -c name=value, applied
	// after the harness defaults (max_connections=200, shared_buffers=128MB,
	// fsync per Fsync), so they can override them. Default none.
	Settings map[string]string

	// StartTimeout bounds initdb plus the first start. Default 60s.
	StartTimeout time.Duration

	// TLS, when set, makes the server require TLS and a client certificate
	// on TCP (see TLS). It implies Managed. Default nil: plain TCP, trust.
	TLS *TLS
}

const (
	defaultRunAsUser    = "nobody"
	defaultStartTimeout = 60 * time.Second
)

var settingName = regexp.MustCompile(`^[a-z_][a-z0-9_.]*$`)

func (o Options) withDefaults() Options {
	if o.RunAsUser == "" {
		o.RunAsUser = defaultRunAsUser
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = defaultStartTimeout
	}
	return o
}

func (o Options) validate() error {
	if o.TLS != nil {
		if err := o.TLS.validate(); err != nil {
			return err
		}
	}
	for name := range o.Settings {
		if !settingName.MatchString(name) {
			return fmt.Errorf("pgtest: invalid setting name %q", name)
		}
	}
	return nil
}

// serverSettings returns the -c settings for the managed server, defaults
// first so that Options.Settings can override them.
func (o Options) serverSettings() [][2]string {
	onOff := "off"
	if o.Fsync {
		onOff = "on"
	}
	s := [][2]string{
		{"listen_addresses", "127.0.0.1"},
		{"max_connections", "200"},
		{"shared_buffers", "128MB"},
		{"fsync", onOff},
		{"full_page_writes", onOff},
		{"synchronous_commit", "on"},
		// Keep the server quiet and predictable for tests.
		{"log_min_messages", "warning"},
		{"log_connections", "off"},
		{"log_disconnections", "off"},
		{"lc_messages", "C"},
		{"timezone", "UTC"},
	}
	names := make([]string, 0, len(o.Settings))
	for name := range o.Settings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s = append(s, [2]string{name, o.Settings[name]})
	}
	return s
}
