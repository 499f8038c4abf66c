package benchkit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK)).
const clockTicks = 100

// ReadMemory reads a process's resident set (VmRSS) and its peak (VmHWM,
// the kernel's high-water mark, so a peak between two samples is not
// missed) from /proc/<pid>/status, in bytes.
func ReadMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm, nil
}

// procStat is the part of /proc/<pid>/stat the benchmark reads.
type procStat struct {
	ppid      int
	self      float64 // utime + stime, seconds
	children  float64 // cutime + cstime (reaped children), seconds
	startTime uint64  // clock ticks after boot: tells a reused pid apart
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("stat of process %d: %w", pid, err)
	}
	// proc(5): "pid (comm) state ppid ..."; comm may hold spaces and
	// parentheses, so fields are counted after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return procStat{}, fmt.Errorf("stat of process %d: malformed %q", pid, s)
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("stat of process %d: %d fields", pid, len(f))
	}
	num := func(k int) float64 { v, _ := strconv.ParseFloat(f[k], 64); return v }
	// f[0] is field 3 (state): field n is f[n-3].
	ppid, _ := strconv.Atoi(f[1])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{
		ppid:      ppid,
		self:      (num(11) + num(12)) / clockTicks,
		children:  (num(13) + num(14)) / clockTicks,
		startTime: start,
	}, nil
}

// CPUSeconds is a process's own user+system time.
func CPUSeconds(pid int) (float64, error) {
	st, err := readStat(pid)
	return st.self, err
}

// ParentPID is a process's parent.
func ParentPID(pid int) (int, error) {
	st, err := readStat(pid)
	return st.ppid, err
}

// TreeCPU measures the CPU time a process and its direct children (the
// Postgres postmaster and its backends, writers and checkpointer) spend
// from Start: live children by their own counters, children that exit
// meanwhile through the parent's cutime+cstime once reaped.
type TreeCPU struct {
	root     int
	rootBase float64
	base     map[int]procStat
}

// StartTreeCPU takes the baseline of root and its children now.
func StartTreeCPU(root int) (*TreeCPU, error) {
	st, err := readStat(root)
	if err != nil {
		return nil, err
	}
	t := &TreeCPU{root: root, rootBase: st.self + st.children, base: map[int]procStat{}}
	kids, err := children(root)
	if err != nil {
		return nil, err
	}
	for pid, s := range kids {
		t.base[pid] = s
	}
	return t, nil
}

// Seconds is the tree's CPU time since Start. A child that existed at
// Start and exited since counts whole in the parent's cutime; its share
// before Start is taken off.
func (t *TreeCPU) Seconds() (float64, error) {
	st, err := readStat(t.root)
	if err != nil {
		return 0, err
	}
	total := st.self + st.children - t.rootBase
	kids, err := children(t.root)
	if err != nil {
		return 0, err
	}
	for pid, s := range kids {
		if b, ok := t.base[pid]; ok && b.startTime == s.startTime {
			total += s.self - b.self
		} else {
			total += s.self
		}
	}
	for pid, b := range t.base {
		if s, ok := kids[pid]; !ok || s.startTime != b.startTime {
			total -= b.self
		}
	}
	return max(total, 0), nil
}

// children returns the processes whose parent is ppid.
func children(ppid int) (map[int]procStat, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	out := map[int]procStat{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != ppid {
			continue // exited meanwhile, or not a child
		}
		out[pid] = st
	}
	return out, nil
}
