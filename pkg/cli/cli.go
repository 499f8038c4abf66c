// Package cli is the cdc command line: one cobra command tree over the
// replicator's packages. Main is everything cmd/cdc does.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/logging"
	"github.com/amanat/cdc/pkg/redact"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1 // a component failed (unreachable system, lost history, schema mismatch, ...)
	ExitUsage  = 2 // bad flags or configuration
)

// Version is set at build time with -ldflags "-X github.com/amanat/cdc/pkg/cli.Version=...".
var Version = "dev"

// usageError marks errors that are the operator's input.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, g := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	// Scrubbed of the configuration's credentials (or, when it did not
	// load, of those in the environment): drivers quote connection strings.
	fmt.Fprintf(stderr, "cdc: %v\n", g.scrubber().Error(inFlagTerms(err))) // errors.go
	var ue *usageError
	var ve config.ValidationError
	var fe *config.FieldError
	if errors.As(err, &ue) || errors.As(err, &ve) || errors.As(err, &fe) {
		return ExitUsage
	}
	return ExitFailed
}

type globals struct {
	configPath string
	stdout     io.Writer
	stderr     io.Writer
	// scrub removes the loaded configuration's credentials (set by load;
	// see scrubber).
	scrub *redact.Scrubber
}

func newRoot(stdout, stderr io.Writer) (*cobra.Command, *globals) {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "cdc",
		Short: "MongoDB -> NATS JetStream -> PostgreSQL change-data-capture replicator",
		Long: `cdc replicates MongoDB collections into PostgreSQL out of process:
a change-stream tailer publishes normalized events to NATS JetStream, and an
idempotent sink applies them per collection in Postgres transactions.

Configuration comes from --config (YAML) and CDC_* environment variables;
see cdc.example.yaml.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.PersistentFlags().StringVarP(&g.configPath, "config", "c", os.Getenv("CDC_CONFIG"), "YAML configuration file (env CDC_CONFIG)")
	root.AddCommand(
		newRunCmd(g, "run", config.RoleAll, "Run the tailer and the sink in one process (the single-node default)"),
		newRunCmd(g, "tail", config.RoleTailer, "Run only the tailer: MongoDB change stream -> JetStream"),
		newRunCmd(g, "sink", config.RoleSink, "Run only the sink: JetStream -> PostgreSQL"),
		newMigrateCmd(g),
		newDLQCmd(g),
		newSnapshotCmd(g),
		newReplayCmd(g),
		newVerifyCmd(g),
		newStatusCmd(g),
		newPositionCmd(g),
		newVersionCmd(g),
	)
	return root, g
}

// load reads and validates the configuration for role.
func (g *globals) load(role config.Role) (config.Config, *zap.Logger, error) {
	cfg, err := config.Load(g.configPath, nil)
	if err != nil {
		return cfg, nil, &usageError{err}
	}
	g.scrub = configScrubber(&cfg)
	if err := cfg.Validate(role); err != nil {
		return cfg, nil, err
	}
	log, err := logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return cfg, nil, &usageError{err}
	}
	return cfg, g.scrub.Logger(log), nil
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := Version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v = "dev-" + s.Value
					}
				}
			}
			fmt.Fprintf(g.stdout, "cdc %s (event envelope v1)\n", v)
			return nil
		},
	}
}
