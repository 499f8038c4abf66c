package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/status"
)

// statusCLI runs `cdc status --json -c path` (plus args) and decodes the
// report from stdout; out is stdout and stderr together, for messages.
func (e *env) statusCLI(path string, args ...string) (code int, r *status.Report, out string) {
	e.t.Helper()
	cmd := exec.CommandContext(e.ctx, cdcBinary, append([]string{"status", "--json", "-c", path}, args...)...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		e.t.Fatalf("cdc status: %v\n%s", err, stderr.String())
	}
	out = stdout.String() + stderr.String()
	r = &status.Report{}
	if err := json.Unmarshal(stdout.Bytes(), r); err != nil {
		e.t.Fatalf("cdc status --json printed no report (%v), exit %d:\n%s", err, code, out)
	}
	return code, r, out
}

// statusCaughtUp polls status until the sink has applied the whole
// stream and the tailer's checkpoint counts every event in it.
func (e *env) statusCaughtUp(path string, timeout time.Duration) (int, *status.Report) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, r, out := e.statusCLI(path)
		if r.Stream.LastSeq > 0 && r.Sink.StreamSeq == r.Stream.LastSeq && r.Tailer.Events == r.Stream.LastSeq && r.Consumer.AckFloorSeq == r.Stream.LastSeq {
			return code, r
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("status did not show a caught-up replicator within %s:\n%s", timeout, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// checkCaughtUp checks a report of a replicator that applied everything.
func checkCaughtUp(t *testing.T, r *status.Report, out string) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format+"\nreport:\n%s", append(args, out)...)
	}
	if r.V != status.ReportVersion {
		fail("report version %d", r.V)
	}
	tl := r.Tailer
	if !tl.Found || tl.ClusterTime == nil || tl.ClusterTime.T == 0 || len(tl.ResumeToken) == 0 || tl.SavedAt == nil || tl.Events == 0 {
		fail("tailer checkpoint incomplete: %+v", tl)
	}
	if r.Oplog.Error != "" || r.Oplog.Lost || r.Oplog.Newest == nil || r.Oplog.HeadroomSeconds == nil || *r.Oplog.HeadroomSeconds < 0 ||
		r.Oplog.BehindSeconds == nil {
		fail("oplog %+v", r.Oplog)
	}
	s := r.Stream
	if s.Error != "" || s.LastSeq == 0 || s.Messages == 0 || s.Bytes == 0 || s.FirstSeq != 1 {
		fail("stream %+v", s)
	}
	if r.DLQStream.Error != "" || r.DLQStream.Messages != 0 {
		fail("dlq stream %+v", r.DLQStream)
	}
	c := r.Consumer
	if !c.Found || c.Pending != 0 || c.AckPending != 0 || c.AckFloorSeq != s.LastSeq {
		fail("consumer %+v", c)
	}
	sk := r.Sink
	if !sk.Found || sk.StreamSeq != s.LastSeq || sk.ClusterTime == nil || sk.ClusterTime.T == 0 || sk.AppliedAt == nil {
		fail("sink position %+v", sk)
	}
	// The position belongs to this stream, and an instance took the
	// consumer.
	if sk.Stream != s.Name || sk.StreamCreated == nil || s.Created == nil || !sk.StreamCreated.Equal(*s.Created) {
		fail("sink stream identity %q %v, stream %q created %v", sk.Stream, sk.StreamCreated, s.Name, s.Created)
	}
	if f := sk.Fence; f == nil || f.Owner == "" || f.Epoch < 1 || f.Since == nil || f.Held == nil || f.Error != "" {
		fail("sink fence %+v", f)
	}
	if d := r.Deferred; d.Error != "" || d.Waiting != 0 || d.TxnParts != 0 || d.Bytes != 0 || d.Oldest != nil {
		fail("deferred %+v", d)
	}
	if len(r.Warnings) != 0 {
		fail("warnings %q", r.Warnings)
	}
	if r.Lag.Error != "" || r.Lag.Events != 0 || r.Lag.Seconds != 0 {
		fail("lag %+v", r.Lag)
	}
	if r.DeadLetters.Error != "" || r.DeadLetters.Open != 0 || len(r.DeadLetters.Count) != 0 {
		fail("dead letters %+v", r.DeadLetters)
	}
	cs := r.Collections
	if cs.Error != "" || cs.PostgresError != "" || cs.MongoError != "" || len(cs.Items) != len(testCollections) {
		fail("collections %+v", cs)
	}
	for _, it := range cs.Items {
		if it.Error != "" || it.Rows == nil || it.Mongo == nil || it.DocVersions == nil || it.Tombstones == nil ||
			*it.Rows != *it.Mongo || *it.DocVersions != *it.Rows || *it.Rows == 0 {
			fail("collection %s: %+v", it.Collection, it)
		}
	}
}

// TestStatusRunningDaemon: status of a running replicator (its embedded
// NATS answering on the configured port) shows every position, and the
// positions move when events flow.
func TestStatusRunningDaemon(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("", filepath.Join(e.dir, "data"))
	cfg.NATS.Embedded.Port = freePort(t)
	cfg.Tailer.StartAt = e.startAt()
	// The test oplog is seconds old: any headroom threshold would be a
	// problem. Only a lost checkpoint is.
	cfg.Oplog.HeadroomWarning = 0
	stop := e.runApp(cfg, app.Options{})
	path := e.writeConfig(cfg)

	must(t, newLoad(e, 31).run(e.ctx, 300))
	e.waitExact(time.Minute)
	code, first := e.statusCaughtUp(path, time.Minute)
	_, _, out := e.statusCLI(path)
	if code != 0 || !first.Healthy || len(first.Problems) != 0 {
		t.Fatalf("caught-up replicator: exit %d, problems %q\n%s", code, first.Problems, out)
	}
	if first.NATS.Mode != status.ModeDaemon || !first.Postgres.Reachable || !first.Mongo.Reachable {
		t.Fatalf("systems: nats %+v postgres %+v mongo %+v", first.NATS, first.Postgres, first.Mongo)
	}
	checkCaughtUp(t, first, out)
	if f := first.Sink.Fence; f == nil || f.Held == nil || !*f.Held {
		t.Errorf("the running daemon's sink holds the fence, status says %+v", f)
	}
	if first.Stream.LastSeq < 300 {
		t.Errorf("300 changes, stream last sequence %d", first.Stream.LastSeq)
	}

	must(t, newLoad(e, 32).run(e.ctx, 200))
	e.waitExact(time.Minute)
	code, second := e.statusCaughtUp(path, time.Minute)
	_, _, out = e.statusCLI(path)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	checkCaughtUp(t, second, out)
	if second.Stream.LastSeq < first.Stream.LastSeq+200 || second.Sink.StreamSeq <= first.Sink.StreamSeq ||
		second.Tailer.Events <= first.Tailer.Events || second.Tailer.ClusterTime.T < first.Tailer.ClusterTime.T ||
		second.Sink.ClusterTime.T < first.Sink.ClusterTime.T {
		t.Errorf("positions did not move with 200 more changes:\nfirst  stream %+v sink %+v tailer events %d\nsecond stream %+v sink %+v tailer events %d",
			first.Stream, first.Sink, first.Tailer.Events, second.Stream, second.Sink, second.Tailer.Events)
	}

	// The text form, for people.
	cmd := exec.CommandContext(e.ctx, cdcBinary, "status", "-c", path)
	cmd.Env = cleanEnv()
	text, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cdc status: %v\n%s", err, text)
	}
	for _, want := range []string{": HEALTHY", "the running daemon's embedded server", "applied floor", fmt.Sprintf("stream sequence %d", second.Sink.StreamSeq), "Lag", "widgets",
		"fence", "lock held now", "Deferred events", second.Stream.Name + " created "} {
		if !strings.Contains(string(text), want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}
	must(t, stop())
}

// TestStatusStoppedDaemon: with the daemon (embedded NATS) stopped by
// SIGTERM, status reads the stored checkpoint and stream state through a
// temporary server, says the daemon is down (exit 1), and leaves the store
// usable; with Postgres unreachable it exits 1 and names it while still
// reading the rest.
func TestStatusStoppedDaemon(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("", filepath.Join(e.dir, "data"))
	cfg.NATS.Embedded.Port = freePort(t)
	cfg.HTTP.Addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg.Tailer.StartAt = e.startAt()
	cfg.Oplog.HeadroomWarning = 0
	path := e.writeConfig(cfg)

	p := e.startProcess(path)
	must(t, newLoad(e, 33).run(e.ctx, 200))
	e.waitExact(time.Minute)
	code, running := e.statusCaughtUp(path, time.Minute)
	if code != 0 || running.NATS.Mode != status.ModeDaemon {
		t.Fatalf("running daemon: exit %d, nats %+v, problems %q", code, running.NATS, running.Problems)
	}
	if f := running.Sink.Fence; f == nil || f.Held == nil || !*f.Held {
		t.Fatalf("the running daemon's sink holds the fence, status says %+v", f)
	}
	if code := p.terminate(); code != 0 {
		t.Fatalf("cdc run exited %d on SIGTERM:\n%s", code, p.tail())
	}

	t.Run("stored state", func(t *testing.T) {
		start := time.Now()
		code, r, out := e.statusCLI(path)
		t.Logf("status of the stopped daemon took %s", time.Since(start).Round(time.Millisecond))
		if code != 1 {
			t.Fatalf("a stopped daemon must exit 1, got %d:\n%s", code, out)
		}
		if r.NATS.Mode != status.ModeStoredState || !r.NATS.Reachable {
			t.Fatalf("nats %+v", r.NATS)
		}
		if len(r.Problems) != 1 || !strings.HasPrefix(r.Problems[0], "daemon: not running") || r.Healthy {
			t.Fatalf("want exactly the stopped daemon as a problem, got %q", r.Problems)
		}
		checkCaughtUp(t, r, out)
		// The stopped daemon's lock went with its session; the record of
		// who took the consumer stays.
		if f := r.Sink.Fence; f == nil || f.Held == nil || *f.Held || f.Owner != running.Sink.Fence.Owner || f.Epoch != running.Sink.Fence.Epoch {
			t.Errorf("fence of the stopped daemon %+v, running %+v", f, running.Sink.Fence)
		}
		if r.Stream.LastSeq != running.Stream.LastSeq || r.Sink.StreamSeq != running.Sink.StreamSeq ||
			r.Tailer.Events != running.Tailer.Events || r.Tailer.ClusterTime.T < running.Tailer.ClusterTime.T {
			t.Errorf("stored state differs from what the running daemon reported:\nrunning stream %+v sink %+v tailer %+v\nstopped stream %+v sink %+v tailer %+v",
				running.Stream, running.Sink, running.Tailer, r.Stream, r.Sink, r.Tailer)
		}
		if !strings.Contains(out, "cdc: status: 1 problems") {
			t.Errorf("stderr does not say why it exits 1:\n%s", out)
		}
	})

	t.Run("postgres unreachable", func(t *testing.T) {
		bad := cfg
		bad.Postgres.URL = fmt.Sprintf("postgres://cdc:s3cret@127.0.0.1:%d/escrow", freePort(t))
		code, r, out := e.statusCLI(e.writeConfig(bad))
		if code != 1 {
			t.Fatalf("Postgres unreachable must exit 1, got %d:\n%s", code, out)
		}
		if !slices.ContainsFunc(r.Problems, func(p string) bool { return strings.HasPrefix(p, "postgres: unreachable") }) ||
			!strings.Contains(out, "connection refused") {
			t.Errorf("the Postgres error is not named: %q", r.Problems)
		}
		if strings.Contains(out, "s3cret") {
			t.Errorf("the password leaked:\n%s", out)
		}
		if r.Postgres.Reachable || r.Sink.Error == "" || r.DeadLetters.Error == "" || r.Lag.Error == "" || r.Collections.PostgresError == "" ||
			r.Deferred.Error == "" || r.Sink.Fence != nil {
			t.Errorf("Postgres sections must be unknown: sink %+v dead letters %+v lag %+v deferred %+v", r.Sink, r.DeadLetters, r.Lag, r.Deferred)
		}
		// The rest is still read.
		if !r.Tailer.Found || r.Stream.LastSeq != running.Stream.LastSeq || !r.Consumer.Found || r.Oplog.Error != "" {
			t.Errorf("one unreachable system hid the others: tailer %+v stream %+v consumer %+v oplog %+v", r.Tailer, r.Stream, r.Consumer, r.Oplog)
		}
	})

	// The temporary servers left the store as the daemon needs it.
	p = e.startProcess(path)
	must(t, newLoad(e, 34).run(e.ctx, 50))
	e.waitExact(time.Minute)
	_, after := e.statusCaughtUp(path, time.Minute)
	if after.Stream.LastSeq < running.Stream.LastSeq+50 {
		t.Errorf("after the restart the stream's last sequence is %d, before %d", after.Stream.LastSeq, running.Stream.LastSeq)
	}
	if code := p.terminate(); code != 0 {
		t.Fatalf("cdc run exited %d on SIGTERM:\n%s", code, p.tail())
	}
	e.assertNoDoubleApply()
}
