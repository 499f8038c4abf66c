package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// installation is one directory holding both initdb and postgres.
type installation struct {
	dir     string
	version []int // e.g. [15 4]; nil if unknown
	raw     string
}

func (i installation) initdb() string   { return filepath.Join(i.dir, "initdb") }
func (i installation) postgres() string { return filepath.Join(i.dir, "postgres") }

// debianGlob is where Debian and Ubuntu install each major version.
const debianGlob = "/usr/lib/postgresql/*/bin"

// findInstallation picks the PostgreSQL installation to run. An explicit
// directory (Options.BinDir or CDC_TEST_PG_BIN) must hold initdb and
// postgres. Otherwise every directory that holds both, from
// /usr/lib/postgresql/*/bin and PATH (symlinks resolved, so
// /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb counts as the
// latter), is asked for its version and the highest wins. initdb and postgres
// always come from the same directory: mixing installations produces data
// directories the server refuses.
func findInstallation(ctx context.Context, explicit string) (installation, error) {
	if explicit == "" {
		explicit = os.Getenv(EnvBinDir)
	}
	if explicit != "" {
		if !hasServerBinaries(explicit) {
			return installation{}, fmt.Errorf("%w in %s (from Options.BinDir or %s): the directory must hold both initdb and postgres", ErrNoBinaries, explicit, EnvBinDir)
		}
		inst := installation{dir: explicit}
		inst.version, inst.raw = serverVersion(ctx, inst.postgres())
		return inst, nil
	}

	var dirs []string
	seen := map[string]bool{}
	add := func(dir string) {
		if resolved, err := filepath.EvalSymlinks(dir); err == nil {
			dir = resolved
		}
		if !seen[dir] && hasServerBinaries(dir) {
			seen[dir] = true
			dirs = append(dirs, dir)
		}
	}
	debian, _ := filepath.Glob(debianGlob)
	for _, d := range debian {
		add(d)
	}
	for _, name := range []string{"initdb", "postgres"} {
		if p, err := exec.LookPath(name); err == nil {
			if resolved, err := filepath.EvalSymlinks(p); err == nil {
				p = resolved
			}
			add(filepath.Dir(p))
		}
	}
	if len(dirs) == 0 {
		return installation{}, fmt.Errorf("%w: looked in %s and on PATH. Install the server with `apt-get install postgresql` (Debian/Ubuntu; the harness starts its own server, the system service is not needed), set %s to the directory holding initdb and postgres, or set %s to an existing server", ErrNoBinaries, debianGlob, EnvBinDir, EnvURL)
	}

	insts := make([]installation, 0, len(dirs))
	for _, d := range dirs {
		inst := installation{dir: d}
		inst.version, inst.raw = serverVersion(ctx, inst.postgres())
		insts = append(insts, inst)
	}
	// Highest version first; stable so that discovery order breaks ties.
	sort.SliceStable(insts, func(a, b int) bool { return compareVersions(insts[a].version, insts[b].version) > 0 })
	return insts[0], nil
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

var versionRE = regexp.MustCompile(`(\d+)(?:\.(\d+))?`)

// serverVersion runs `postgres --version` ("postgres (PostgreSQL) 15.4 (Debian
// 15.4-1)") and returns [15 4]; nil when it cannot tell.
func serverVersion(ctx context.Context, postgres string) ([]int, string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, postgres, "--version").Output()
	if err != nil {
		return nil, ""
	}
	raw := strings.TrimSpace(string(out))
	after := raw
	if i := strings.Index(raw, ")"); i >= 0 {
		after = raw[i+1:]
	}
	m := versionRE.FindStringSubmatch(after)
	if m == nil {
		return nil, raw
	}
	var v []int
	for _, part := range m[1:] {
		if part == "" {
			continue
		}
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil, raw
		}
		v = append(v, n)
	}
	return v, raw
}

// compareVersions orders versions; an unknown (nil) version sorts lowest.
func compareVersions(a, b []int) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y int
		if i < len(a) {
			x = a[i]
		} else if i == 0 {
			x = -1
		}
		if i < len(b) {
			y = b[i]
		} else if i == 0 {
			y = -1
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
