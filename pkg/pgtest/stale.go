package pgtest

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ownerFile, in a managed cluster's temporary directory, holds the pid of the
// test process that owns it.
const ownerFile = "owner.pid"

const tempPattern = "pgtest-*"

// sweepStale removes temporary directories left by test processes that died
// without Close (a -timeout panic, a kill): their server went with them
// (Pdeathsig), but ~50 MB of data directory stays behind each time. A
// directory is removed only when its owner process is gone and no server
// runs in it; directories without an owner file are left alone.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPattern))
	for _, dir := range dirs {
		owner, ok := readPid(filepath.Join(dir, ownerFile))
		if !ok || alive(owner) {
			continue
		}
		if server, ok := readPid(filepath.Join(dir, "data", "postmaster.pid")); ok && alive(server) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

func writeOwner(dir string) error {
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// readPid reads the pid on the first line of a file (postmaster.pid has it
// there too).
func readPid(path string) (int, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	if !s.Scan() {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s.Text()))
	return pid, err == nil && pid > 0
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
