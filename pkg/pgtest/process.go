package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// serverProcess is one run of the postmaster, from launch to exit.
type serverProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status; read only after done is closed
}

func (p *serverProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// shutdown sends sig (SIGINT: fast shutdown; SIGQUIT: immediate shutdown)
// and waits for the postmaster to exit. If ctx ends first, the whole process
// group is killed and ctx's error returned.
func (p *serverProcess) shutdown(ctx context.Context, sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		return fmt.Errorf("pgtest: signal postgres (pid %d): %w", p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		// The postmaster leads its own process group (Setpgid), so this
		// takes its backends with it.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("pgtest: postgres did not shut down in time, killed: %w", ctx.Err())
	}
}

// childEnv is the environment for initdb and postgres: the caller's, minus
// libpq variables that could redirect them, with C messages so that errors
// are readable in any locale.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

func (c *Cluster) sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Credential: c.as.credential(),
		Setpgid:    true,
		// If the test binary dies (timeout panic, kill), the server goes
		// with it instead of lingering on the machine.
		Pdeathsig: syscall.SIGQUIT,
	}
}

func (c *Cluster) initdb(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, c.inst.initdb(),
		"-D", c.dataDir,
		"-U", superuser,
		"-A", "trust",
		"-E", "UTF8",
		"--locale=C",
		"-N", // no fsync of the fresh data directory: it is thrown away anyway
	)
	cmd.Dir = c.tmpDir
	cmd.Env = childEnv()
	cmd.SysProcAttr = c.sysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: initdb (%s) failed: %w\n%s", c.inst.initdb(), err, tail(out, 30))
	}
	return nil
}

// launch starts the postmaster on c.port and waits until it accepts
// connections.
func (c *Cluster) launch(ctx context.Context) (*serverProcess, error) {
	args := []string{"-D", c.dataDir, "-p", strconv.Itoa(c.port), "-k", c.tmpDir}
	for _, kv := range append(c.opts.serverSettings(), c.tlsSettings()...) {
		args = append(args, "-c", kv[0]+"="+kv[1])
	}
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgtest: open server log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	logStart, _ := logFile.Seek(0, 2)

	cmd := exec.Command(c.inst.postgres(), args...)
	cmd.Dir = c.tmpDir
	cmd.Env = childEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = c.sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pgtest: start %s: %w", c.inst.postgres(), err)
	}
	p := &serverProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	if err := c.waitReady(ctx, p); err != nil {
		if !p.exited() {
			_ = p.shutdown(context.WithoutCancel(ctx), syscall.SIGQUIT)
		}
		return nil, fmt.Errorf("%w\nserver log (%s):\n%s", err, c.logPath, c.logSince(logStart))
	}
	return p, nil
}

// waitReady polls until the server answers a query, the process exits, or
// ctx ends.
func (c *Cluster) waitReady(ctx context.Context, p *serverProcess) error {
	var lastErr error
	for {
		if p.exited() {
			return fmt.Errorf("pgtest: postgres exited during start-up: %v", p.err)
		}
		if lastErr = ping(ctx, c.adminURL); lastErr == nil {
			return nil
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres not ready on port %d: %w (last error: %v)", c.port, ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, connURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

func (c *Cluster) logSince(offset int64) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if offset > 0 && offset <= int64(len(b)) {
		b = b[offset:]
	}
	return tail(b, 30)
}

// portInUse tells whether a failed launch failed because another process
// took the port between freePort and the bind.
func (c *Cluster) portInUse(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Address already in use") || strings.Contains(s, "could not create any TCP/IP sockets")
}

// freePort asks the kernel for an unused 127.0.0.1 port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
