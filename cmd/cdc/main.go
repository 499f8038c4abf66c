// Command cdc is the MongoDB -> NATS JetStream -> PostgreSQL replicator.
// See the README for the quick start and `cdc --help` for the commands.
package main

import (
	"os"

	"github.com/amanat/cdc/pkg/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
