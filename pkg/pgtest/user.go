package pgtest

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// runAs is the unprivileged identity that runs initdb and postgres when the
// test process is root; nil when the harness already runs unprivileged.
type runAs struct {
	name     string
	uid, gid uint32
}

func (r *runAs) credential() *syscall.Credential {
	if r == nil {
		return nil
	}
	return &syscall.Credential{Uid: r.uid, Gid: r.gid, Groups: []uint32{}}
}

// lookupRunAs returns nil unless the process is root, and otherwise the
// user named by name, which must exist.
func lookupRunAs(name string) (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, PostgreSQL must run as an unprivileged user, but user %q cannot be found (%v); create it (e.g. `useradd --system --no-create-home %s`) or set Options.RunAsUser", name, err, name)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: user %q has non-numeric uid %q", name, u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: user %q has non-numeric gid %q", name, u.Gid)
	}
	if uid == 0 {
		return nil, fmt.Errorf("pgtest: Options.RunAsUser %q is root; PostgreSQL refuses to run as root", name)
	}
	return &runAs{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
}

// checkReachable verifies that r can walk down to dir (search permission on
// every ancestor). A TMPDIR under /root, say, would otherwise fail later with
// an obscure "permission denied" from initdb.
func (r *runAs) checkReachable(dir string) error {
	if r == nil {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok {
			var bit os.FileMode
			switch {
			case st.Uid == r.uid:
				bit = 0o100
			case st.Gid == r.gid:
				bit = 0o010
			default:
				bit = 0o001
			}
			if fi.Mode().Perm()&bit == 0 {
				return fmt.Errorf("pgtest: user %s (which runs PostgreSQL because the tests run as root) cannot enter %s on the way to %s; set TMPDIR to a directory every user can reach, such as /tmp", r.name, d, abs)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
