package e2e

import (
	"context"
	"fmt"
	"github.com/amanat/cdc/pkg/app"
	"go.mongodb.org/mongo-driver/v2/bson"
	"net"
	"strings"
	"testing"
	"time"
)

// TestContinuousVerifyDuringLoad (issue 14, acceptance 3): `cdc run` with
// verify.continuous.rate verifies in the background while the driver
// writes about 500 changes per second. Over the load alone it counts
// documents checked and no mismatch at all (every change in flight is
// re-checked, never counted); a 1E-18 change made directly in Postgres to
// a replicated numeric(38,18) value during the load is counted, for that
// document alone, within a pass over the collections plus the recheck,
// and recorded for `cdc status`.
func TestContinuousVerifyDuringLoad(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	cfg.HTTP.Addr = "127.0.0.1:0"
	const rate, recheck = 1500, 2 * time.Second
	cfg.Verify.Continuous.Rate = rate
	cfg.Verify.Continuous.Recheck = recheck
	addrc := make(chan net.Addr, 1)
	e.runApp(cfg, app.Options{HTTPReady: func(a net.Addr) { addrc <- a }})
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a.String()
	case <-time.After(30 * time.Second):
		t.Fatal("HTTP endpoint did not start")
	}
	scrape := func(name string, labels ...string) float64 {
		t.Helper()
		code, body := httpGet(t, base+"/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		return metricSum(body, name, labels...)
	}
	l := newLoad(e, 41)
	must(t, l.run(e.ctx, 1500))
	// A widget the load never touches, to change behind the replicator's
	// back during the load.
	sentinel := bson.NewObjectID()
	_, err := e.client.Database(e.dbName).Collection("widgets").InsertOne(e.ctx, l.doc("widgets", sentinel, 1))
	must(t, err)
	e.waitExact(time.Minute)

	// The load: 500 operations per second in 10 ms steps, until stopped.
	const perSecond = 500
	ctx, stop := context.WithTimeout(e.ctx, 2*time.Minute)
	defer stop()
	pl := startPacedLoad(ctx, l, perSecond)
	ops, loadErr, loadStart := &pl.ops, pl.done, pl.start
	docs := func() int {
		return e.count(e.ctx, `SELECT (SELECT count(*) FROM widgets) + (SELECT count(*) FROM gadgets)`)
	}
	waitFor := func(what string, within time.Duration, cond func() string) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			msg := cond()
			if msg == "" {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("%s: not within %s: %s", what, within, msg)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The load alone, for at least three passes over every document and
	// 4 s, then a recheck: checked moves, nothing is counted.
	start := scrape("cdc_verify_checked_total")
	passes := func() float64 { return (scrape("cdc_verify_checked_total") - start) / float64(docs()) }
	var p float64
	took := waitFor("three passes during the load", time.Minute, func() string {
		if p = passes(); p < 3 || time.Since(loadStart) < 4*time.Second {
			return fmt.Sprintf("%.2f passes", p)
		}
		return ""
	})
	pass := time.Duration(float64(took) / p)
	t.Logf("a pass over about %d documents took %s during the load (%d ops so far)", docs(), pass.Round(time.Millisecond), ops.Load())
	// A candidate found so far would be confirmed by now: the recheck has
	// passed and the verifier has walked every document once more since
	// (progress, not wall time alone, so a slow machine cannot pass it early).
	since, checkedAt := time.Now(), scrape("cdc_verify_checked_total")
	waitFor("the recheck and one more pass", time.Minute, func() string {
		if d := scrape("cdc_verify_checked_total") - checkedAt; time.Since(since) < recheck || d < float64(docs()) {
			return fmt.Sprintf("%.0f checked in %s", d, time.Since(since).Round(time.Millisecond))
		}
		return ""
	})
	if m := scrape("cdc_verify_mismatches_total"); m != 0 {
		t.Fatalf("%v mismatches counted over the load without any tampering (false alarms)", m)
	}
	if n := e.count(e.ctx, `SELECT count(*) FROM cdc.verify_mismatches`); n != 0 {
		t.Fatalf("%d mismatches recorded over the load without any tampering", n)
	}

	// Behind the replicator's back, during the load.
	e.sqlBehind(false, `UPDATE widgets SET price = price + 0.000000000000000001
		WHERE id = (SELECT new_id FROM id_map WHERE collection = 'widgets' AND legacy_object_id = $1)`, sentinel.Hex())
	tampered := time.Now()
	// A pass finds it, the recheck confirms it: allow two passes (the walk
	// may just have gone by) and the recheck, plus a busy machine's slack.
	bound := 2*pass + recheck + 5*time.Second
	waitFor("the 1E-18 change counted", bound, func() string {
		if m := scrape("cdc_verify_mismatches_total", `collection="widgets"`, `check="document_diff"`); m < 1 {
			return fmt.Sprintf("%v counted", m)
		}
		return ""
	})
	latency := time.Since(tampered)
	loadOps, loadTook := ops.Load(), time.Since(loadStart)
	stop()
	must(t, <-loadErr)
	t.Logf("the 1E-18 change was counted %s after it was made (pass %s, recheck %s, bound %s); load: %d ops in %s (%.0f/s)",
		latency.Round(time.Millisecond), pass.Round(time.Millisecond), recheck, bound, loadOps, loadTook.Round(time.Millisecond),
		float64(loadOps)/loadTook.Seconds())
	if latency < recheck {
		t.Fatalf("counted %s after the change, before its recheck of %s", latency, recheck)
	}
	// Only the tampered document, and for document_diff only.
	if m, w := scrape("cdc_verify_mismatches_total"), scrape("cdc_verify_mismatches_total", `collection="widgets"`, `check="document_diff"`); m != w {
		t.Fatalf("%v mismatches counted, %v of them the tampered widget's: false alarms", m, w)
	}
	var key, check, column, mongo, pg string
	must(t, e.pool.QueryRow(e.ctx, `SELECT doc_key, check_name, column_name, mongo_value, postgres_value FROM cdc.verify_mismatches`).
		Scan(&key, &check, &column, &mongo, &pg))
	if key != sentinel.Hex() || check != "document_diff" || column != "price" {
		t.Fatalf("recorded %s %s %s, want the sentinel's document_diff on price", key, check, column)
	}
	if n := e.count(e.ctx, `SELECT count(*) FROM cdc.verify_mismatches`); n != 1 {
		t.Fatalf("%d mismatches recorded, want only the sentinel's", n)
	}
	t.Logf("recorded: mongo %s, postgres %s", mongo, pg)
	// cdc status shows it: collection, document key, check, when.
	_, rep, out := e.statusCLI(e.writeConfig(cfg))
	if v := rep.Verify; v == nil || v.Last == nil || v.Last.Collection != "widgets" || v.Last.DocKey != sentinel.Hex() ||
		v.Last.Check != "document_diff" || v.Last.At.Before(tampered.Add(-time.Second)) {
		t.Fatalf("cdc status does not show the mismatch: %+v\n%s", rep.Verify, out)
	}
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "continuous verification: widgets "+sentinel.Hex()+" failed document_diff") {
		t.Fatalf("cdc status does not warn about the mismatch: %q", rep.Warnings)
	}
	if float64(loadOps)/loadTook.Seconds() < 250 {
		t.Fatalf("the load ran at %.0f changes/s, far from the ~%d/s this test is about", float64(loadOps)/loadTook.Seconds(), perSecond)
	}
}
