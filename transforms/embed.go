// Package transforms ships the built-in per-collection mappings (the
// money-core set for the escrow collections), embedded in the binary. The
// format is described in README.md beside this file.
package transforms

import "embed"

// Builtin holds every *.yaml mapping of this directory.
//
//go:embed *.yaml
var Builtin embed.FS
