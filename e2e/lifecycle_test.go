package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/config"
	"github.com/amanat/cdc/pkg/mongotest"
	"github.com/amanat/cdc/pkg/tailer"
)

// lcEnv is an env whose NATS outlives the replicator's runs, for the
// lifecycle tests (the binary is stopped and restarted around the
// recovery).
type lcEnv struct {
	*env
	cfg     config.Config
	cfgPath string
	load    *load
}

func newLcEnv(t *testing.T) *lcEnv {
	t.Helper()
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	cfg.Snapshot.AllowedTargets = []string{"127.0.0.1"}
	return &lcEnv{env: e, cfg: cfg, cfgPath: e.writeConfig(cfg), load: newLoad(e, 10)}
}

// insertWidgets writes n widgets (version 1) and returns their ids.
func (l *lcEnv) insertWidgets(coll string, n int) []bson.ObjectID {
	l.t.Helper()
	ids := make([]bson.ObjectID, n)
	docs := make([]any, n)
	for i := range ids {
		ids[i] = bson.NewObjectID()
		docs[i] = l.load.doc("widgets", ids[i], 1)
	}
	_, err := l.client.Database(l.dbName).Collection(coll).InsertMany(l.ctx, docs)
	must(l.t, err)
	return ids
}

// replicate runs `cdc run` until Postgres equals Mongo, then stops it
// (exit 0).
func (l *lcEnv) replicate() {
	l.t.Helper()
	p := l.startProcess(l.cfgPath)
	l.waitExact(60 * time.Second)
	if code := p.terminate(); code != 0 {
		l.t.Fatalf("cdc run exit %d after a clean stop:\n%s", code, p.tail())
	}
}

// stopsAt runs `cdc run`, wants it to exit 1 on its own with want in its
// output, and returns the tailer's stop message.
func (l *lcEnv) stopsAt(want string) string {
	l.t.Helper()
	r := l.cdc(l.cfgPath, "run")
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		l.t.Fatalf("want exit 1 naming %q: %s", want, r)
	}
	i := strings.Index(r.stderr, "cdc: ")
	if i < 0 {
		l.t.Fatalf("no final error line: %s", r)
	}
	return strings.TrimSpace(r.stderr[i:])
}

// recover runs the documented recovery for colls: replay ids of every id
// Postgres has (documents gone from MongoDB become deletes), then a
// snapshot without waiting for the (stopped) tailer.
func (l *lcEnv) recover(colls ...string) {
	l.t.Helper()
	for _, c := range colls {
		rows, err := l.pool.Query(l.ctx, `SELECT legacy_object_id FROM id_map WHERE collection = $1`, c)
		must(l.t, err)
		var ids []string
		for rows.Next() {
			var id string
			must(l.t, rows.Scan(&id))
			ids = append(ids, id)
		}
		must(l.t, rows.Err())
		rows.Close()
		if len(ids) == 0 {
			continue
		}
		f := filepath.Join(l.dir, c+".ids")
		must(l.t, os.WriteFile(f, []byte(strings.Join(ids, "\n")+"\n"), 0o600))
		if r := l.cdc(l.cfgPath, "replay", "ids", "--collection", c, "--ids-file", f); r.code != 0 {
			l.t.Fatalf("recovery step replay ids: %s", r)
		}
	}
	if r := l.cdc(l.cfgPath, "snapshot", "--collections", strings.Join(colls, ","), "--no-wait-tailer", "--progress", "none"); r.code != 0 {
		l.t.Fatalf("recovery step snapshot: %s", r)
	}
}

// afterRecovery runs `cdc run` after the recovery: it must pass the event
// and end exact; a later write replicates too (it does not stop again).
func (l *lcEnv) afterRecovery() {
	l.t.Helper()
	p := l.startProcess(l.cfgPath)
	l.exactWhile(p, 90*time.Second)
	l.insertWidgets("widgets", 2)
	l.exactWhile(p, 60*time.Second)
	if code := p.terminate(); code != 0 {
		l.t.Fatalf("cdc run exit %d after the recovery:\n%s", code, p.tail())
	}
	// A restart after it does not loop or stop: it replicates on.
	p = l.startProcess(l.cfgPath)
	l.insertWidgets("widgets", 1)
	l.exactWhile(p, 60*time.Second)
	if code := p.terminate(); code != 0 {
		l.t.Fatalf("cdc run exit %d on the restart after the recovery:\n%s", code, p.tail())
	}
	if strings.Contains(p.tail(), "InvalidResumeToken") {
		l.t.Fatalf("the restart met a 260:\n%s", p.tail())
	}
}

// exactWhile waits until Postgres equals Mongo while p runs, failing with
// the difference and p's output.
func (l *lcEnv) exactWhile(p *process, d time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(d)
	for {
		diff, err := l.compare(l.ctx)
		if err == nil && diff == "" {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("Postgres did not converge within %s: %v %s\ncdc run output:\n%s", d, err, diff, p.tail())
		}
		select {
		case <-p.done:
			l.t.Fatalf("cdc run exited %d before Postgres converged (%v %s):\n%s", p.cmd.ProcessState.ExitCode(), err, diff, p.tail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestLifecycleRenameOntoWatched (issue 10, acceptance 2): a collection
// renamed onto the replicated widgets (dropTarget: the rebuild-and-swap
// pattern) stops `cdc run` with exit 1 and the recovery; a restart stops
// again with the same message; the recovery ends exact.
func TestLifecycleRenameOntoWatched(t *testing.T) {
	l := newLcEnv(t)
	l.insertWidgets("widgets", 4)
	l.replicate()
	// The rebuilt collection, with images as the widgets had.
	db := l.client.Database(l.dbName)
	must(t, db.CreateCollection(l.ctx, "widgets_rebuilt", options.CreateCollection().SetChangeStreamPreAndPostImages(bson.M{"enabled": true})))
	l.insertWidgets("widgets_rebuilt", 3)
	must(t, l.client.Database("admin").RunCommand(l.ctx, bson.D{{Key: "renameCollection", Value: l.dbName + ".widgets_rebuilt"},
		{Key: "to", Value: l.dbName + ".widgets"}, {Key: "dropTarget", Value: true}}).Err())

	first := l.stopsAt("was renamed onto the replicated collection " + l.dbName + ".widgets")
	if again := l.stopsAt("was renamed onto"); again != first {
		t.Fatalf("the restart stopped with another message:\n%s\nfirst:\n%s", again, first)
	}
	for _, w := range []string{"cdc snapshot --collections widgets --no-wait-tailer", "cdc replay ids --collection widgets"} {
		if !strings.Contains(first, w) {
			t.Fatalf("the message lacks the recovery %q:\n%s", w, first)
		}
	}
	l.recover("widgets")
	l.afterRecovery()
}

// TestLifecycleDropWatched (acceptance 2): dropping a replicated
// collection stops `cdc run` (exit 1): Postgres keeps the last state; the
// recovery (after re-creating the collection) ends exact.
func TestLifecycleDropWatched(t *testing.T) {
	l := newLcEnv(t)
	l.insertWidgets("widgets", 3)
	l.replicate()
	must(t, l.client.Database(l.dbName).Collection("widgets").Drop(l.ctx))
	first := l.stopsAt("collection " + l.dbName + ".widgets was dropped")
	if !strings.Contains(first, "its last state") {
		t.Fatalf("the message does not say what Postgres holds:\n%s", first)
	}
	if again := l.stopsAt("was dropped"); again != first {
		t.Fatalf("the restart stopped with another message:\n%s\nfirst:\n%s", again, first)
	}
	must(t, l.client.Database(l.dbName).CreateCollection(l.ctx, "widgets", options.CreateCollection().SetChangeStreamPreAndPostImages(bson.M{"enabled": true})))
	l.recover("widgets")
	l.afterRecovery()
}

// TestLifecycleDropDatabase (acceptance 2): dropping the database stops
// `cdc run` (exit 1); after the recovery the tailer starts after the
// invalidate (startAfter) and replicates the re-created collections.
func TestLifecycleDropDatabase(t *testing.T) {
	l := newLcEnv(t)
	l.insertWidgets("widgets", 3)
	l.replicate()
	must(t, l.client.Database(l.dbName).Drop(l.ctx))
	first := l.stopsAt(`database "` + l.dbName + `" was dropped`)
	if again := l.stopsAt("was dropped"); again != first {
		t.Fatalf("the restart stopped with another message:\n%s\nfirst:\n%s", again, first)
	}
	for _, c := range testCollections {
		must(t, l.client.Database(l.dbName).CreateCollection(l.ctx, c, options.CreateCollection().SetChangeStreamPreAndPostImages(bson.M{"enabled": true})))
	}
	l.recover(testCollections...)
	l.afterRecovery()
}

// TestTopologyRefusedE2E (acceptance 5): `cdc run` against a mongos or a
// standalone is refused before any change stream, saying only replica
// sets are supported. It always uses the emulator (a real mongos or
// standalone is not part of the test setup).
func TestTopologyRefusedE2E(t *testing.T) {
	for _, topo := range []string{mongotest.TopologyMongos, mongotest.TopologyStandalone} {
		t.Run(topo, func(t *testing.T) {
			e := newEnv(t)
			srv, err := mongotest.New(mongotest.Options{Topology: topo})
			must(t, err)
			t.Cleanup(func() { _ = srv.Close() })
			cfg := e.config("", filepath.Join(e.dir, "data"))
			cfg.Mongo.URI = srv.URI()
			ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
			defer cancel()
			err = app.Run(ctx, cfg, config.RoleAll, e.log, app.Options{})
			var te *tailer.TopologyError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), "only replica sets are supported") {
				t.Fatalf("want a topology refusal, got %v", err)
			}
			r := e.cdc(e.writeConfig(cfg), "run")
			if r.code != 1 || !strings.Contains(r.stderr, "only replica sets are supported") {
				t.Fatalf("want exit 1 saying only replica sets are supported: %s", r)
			}
		})
	}
}
