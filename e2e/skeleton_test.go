package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.yaml.in/yaml/v3"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/tailer"
)

// startAt returns the current cluster time as tailer.start_at, so the
// tailer starts before the test's first write whatever the timing.
func (e *env) startAt() string {
	e.t.Helper()
	sess, err := e.client.StartSession(options.Session().SetCausalConsistency(true))
	must(e.t, err)
	defer sess.EndSession(e.ctx)
	var res bson.Raw
	err = e.client.Database(e.dbName).RunCommand(mongoSessCtx(e.ctx, sess), bson.D{{Key: "ping", Value: 1}}).Decode(&res)
	must(e.t, err)
	ot := sess.OperationTime()
	if ot == nil {
		e.t.Fatal("server returned no operationTime")
	}
	return fmt.Sprintf("%d.%d", ot.T, ot.I)
}

// TestEndToEndExact: 10,000 mixed writes over two collections end in
// Postgres exactly as the final Mongo state.
func TestEndToEndExact(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	stop := e.runApp(cfg, app.Options{})
	l := newLoad(e, 1)
	must(t, l.run(e.ctx, 10000))
	e.waitExact(2 * time.Minute)
	if err := stop(); err != nil {
		t.Fatalf("clean shutdown returned %v", err)
	}
	e.assertNoDoubleApply()
	if got := e.count(e.ctx, `SELECT count(*) FROM widgets`) + e.count(e.ctx, `SELECT count(*) FROM gadgets`); got == 0 {
		t.Fatal("nothing replicated")
	}
}

// TestCrashAndResume kills the replicator process (SIGKILL, embedded NATS
// inside it) three times during the load and restarts it.
func TestCrashAndResume(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("", filepath.Join(e.dir, "data"))
	cfg.Tailer.StartAt = e.startAt()
	cfgPath := e.writeConfig(cfg)

	var ops atomic.Int64
	loadErr := make(chan error, 1)
	l := newLoad(e, 2)
	go func() {
		for i := 0; i < 10000; i++ {
			if err := l.run(e.ctx, 1); err != nil {
				loadErr <- err
				return
			}
			ops.Add(1)
		}
		loadErr <- nil
	}()
	p := e.startProcess(cfgPath)
	for _, at := range []int64{2000, 5000, 8000} {
		for ops.Load() < at {
			time.Sleep(20 * time.Millisecond)
		}
		p.kill()
		p = e.startProcess(cfgPath)
	}
	must(t, <-loadErr)
	e.waitExact(2 * time.Minute)
	if code := p.terminate(); code != 0 {
		t.Fatalf("graceful stop exited %d:\n%s", code, p.tail())
	}
	e.assertNoDoubleApply()
}

// TestTailAndSinkAsSeparateProcesses: `cdc tail` (with the embedded
// JetStream server) and `cdc sink` (pointed at it) replicate exactly as
// `cdc run` does, and a sink without nats.url is refused.
func TestTailAndSinkAsSeparateProcesses(t *testing.T) {
	e := newEnv(t)
	tcfg := e.config("", filepath.Join(e.dir, "tail-data"))
	tcfg.Tailer.StartAt = e.startAt()
	tcfg.NATS.Embedded.Port = freePort(t)
	tail := e.startCommand("tail", e.writeConfig(tcfg))
	scfg := tcfg
	scfg.NATS.URL = fmt.Sprintf("nats://127.0.0.1:%d", tcfg.NATS.Embedded.Port)
	sink := e.startCommand("sink", e.writeConfig(scfg))
	must(t, newLoad(e, 6).run(e.ctx, 2000))
	e.waitExact(time.Minute)
	if code := sink.terminate(); code != 0 {
		t.Fatalf("sink exited %d:\n%s", code, sink.tail())
	}
	if code := tail.terminate(); code != 0 {
		t.Fatalf("tail exited %d:\n%s", code, tail.tail())
	}
	e.assertNoDoubleApply()

	scfg.NATS.URL = ""
	lone := e.startCommand("sink", e.writeConfig(scfg))
	if code := lone.wait(30 * time.Second); code != 2 || !strings.Contains(lone.tail(), "nats.url") {
		t.Fatalf("a sink without nats.url: exit %d:\n%s", code, lone.tail())
	}
}

// TestOutagesRecover restarts NATS, stops Postgres for a few seconds and
// drops every Mongo connection, each during load.
func TestOutagesRecover(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	stop := e.runApp(cfg, app.Options{})
	l := newLoad(e, 3)

	must(t, l.run(e.ctx, 1500))
	t.Log("restarting NATS")
	n.stop()
	time.Sleep(1500 * time.Millisecond)
	n.start()
	must(t, l.run(e.ctx, 1500))

	t.Log("stopping Postgres")
	c := pgtestShared()
	must(t, c.Stop(e.ctx))
	loadDone := make(chan error, 1)
	go func() { loadDone <- l.run(e.ctx, 1500) }()
	time.Sleep(4 * time.Second)
	must(t, c.StartAgain(e.ctx))
	must(t, <-loadDone)

	t.Log("dropping Mongo connections")
	go func() { loadDone <- l.run(e.ctx, 1500) }()
	time.Sleep(200 * time.Millisecond)
	e.dropMongoConnections()
	must(t, <-loadDone)

	e.waitExact(2 * time.Minute)
	if err := stop(); err != nil {
		t.Fatalf("replicator failed: %v", err)
	}
	e.assertNoDoubleApply()
}

// TestLostHistoryFailsLoudly: a start point older than the oplog makes the
// tailer exit non-zero and say what happened and what to do.
func TestLostHistoryFailsLoudly(t *testing.T) {
	e := newEnv(t)
	// An oplog entry before any start point of this test (an unwatched
	// collection, so the replicated state stays the load's).
	_, err := e.client.Database(e.dbName).Collection("scratch").InsertOne(e.ctx, bson.D{{Key: "name", Value: "x"}})
	must(t, err)

	t.Run("start point before the oplog", func(t *testing.T) {
		cfg := e.config("", filepath.Join(e.dir, "data-start"))
		cfg.Tailer.StartAt = "1.0"
		// The tailer alone (`cdc tail`): with `cdc run` the sink could
		// record a position for this throwaway embedded stream before the
		// tailer stops the process, and the next subtest's sink would then
		// (rightly) refuse its stream as a re-created one.
		p := e.startCommand("tail", e.writeConfig(cfg))
		code := p.wait(60 * time.Second)
		out := p.tail()
		if code == 0 {
			t.Fatalf("tailer exited 0 on lost history:\n%s", out)
		}
		for _, want := range []string{"history lost", "286", "re-snapshot"} {
			if !strings.Contains(out, want) {
				t.Errorf("exit message does not mention %q:\n%s", want, out)
			}
		}
	})

	t.Run("checkpoint fell off the oplog", func(t *testing.T) {
		if e.srv == nil {
			// A real replica set's oplog cannot be truncated from a test;
			// the subtest above covers it there.
			t.Log("real replica set: covered by the start-point case")
			return
		}
		n := e.startNATS()
		cfg := e.config(n.url(), e.dir)
		cfg.Tailer.StartAt = e.startAt()
		stop := e.runApp(cfg, app.Options{})
		must(t, newLoad(e, 4).run(e.ctx, 50))
		e.waitExact(time.Minute)
		must(t, stop())
		// More writes, then the oplog loses everything up to now.
		must(t, newLoad(e, 5).run(e.ctx, 20))
		latest := e.srv.LatestOplogTime()
		e.srv.TruncateOplog(bson.Timestamp{T: latest.T, I: latest.I + 1})
		ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
		defer cancel()
		err := app.Run(ctx, cfg, config.RoleAll, e.log, app.Options{})
		var hl *tailer.HistoryLostError
		if !errors.As(err, &hl) {
			t.Fatalf("want HistoryLostError, got %v", err)
		}
		if !strings.Contains(err.Error(), "cdc snapshot") {
			t.Errorf("error has no recovery instructions: %v", err)
		}
	})
}

// TestBadConfigurationFails: clear errors naming the problem, exit code 2.
func TestBadConfigurationFails(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"missing uri", []string{"run", "-c", write("a.yaml", "postgres: {url: postgres://x@localhost/db}\n")}, []string{"mongo.uri", "required"}},
		{"unknown key", []string{"run", "-c", write("b.yaml", "mongo: {uri: mongodb://x, database: d, colections: [a]}\npostgres: {url: postgres://x@h/d}\n")}, []string{"colections"}},
		{"malformed yaml", []string{"run", "-c", write("c.yaml", "mongo: [uri: \n  - {\n")}, []string{"c.yaml"}},
		{"unknown collection", []string{"run", "-c", write("d.yaml", "mongo: {uri: mongodb://127.0.0.1:1, database: d, collections: [nope]}\npostgres: {url: postgres://x@h/d}\n")}, []string{"nope", "no transform"}},
		{"missing file", []string{"run", "-c", filepath.Join(dir, "absent.yaml")}, []string{"absent.yaml", "does not exist"}},
		{"bad duration", []string{"run", "-c", write("e.yaml", "mongo: {uri: mongodb://x, database: d}\npostgres: {url: postgres://x@h/d}\nsink: {batch_wait: soon}\n")}, []string{"batch_wait"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(cdcBinary, tc.args...)
			cmd.Env = cleanEnv()
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("want exit code 2, got %v; stderr:\n%s", err, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CDC_") {
			out = append(out, kv)
		}
	}
	return out
}

// writeConfig renders cfg as the YAML file an operator would write.
func (e *env) writeConfig(cfg any) string {
	e.t.Helper()
	b, err := yaml.Marshal(toYAMLMap(cfg))
	must(e.t, err)
	p := filepath.Join(e.dir, fmt.Sprintf("cdc-%d.yaml", time.Now().UnixNano()))
	must(e.t, os.WriteFile(p, b, 0o600))
	return p
}

// process is the cdc binary running `cdc run`.
type process struct {
	t    testing.TB
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

func (e *env) startProcess(cfgPath string) *process {
	e.t.Helper()
	return e.startCommand("run", cfgPath)
}

// startCommand runs `cdc <sub> -c cfgPath`.
func (e *env) startCommand(sub, cfgPath string) *process {
	e.t.Helper()
	cmd := exec.Command(cdcBinary, sub, "-c", cfgPath)
	cmd.Env = cleanEnv()
	buf := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	must(e.t, cmd.Start())
	p := &process{t: e.t, cmd: cmd, out: buf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() { p.kill() })
	return p
}

func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// terminate sends SIGTERM and returns the exit code.
func (p *process) terminate() int {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(60 * time.Second)
}

func (p *process) wait(d time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(d):
		p.kill()
		p.t.Fatalf("cdc did not exit within %s:\n%s", d, p.tail())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *process) tail() string {
	s := p.out.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}
