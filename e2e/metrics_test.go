package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amanat/cdc/pkg/app"
	"github.com/amanat/cdc/pkg/metrics"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, string(b)
}

// metricSum adds every sample of a metric whose labels contain all of want.
func metricSum(body, name string, want ...string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	var sum float64
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		ok := true
		for _, w := range want {
			if !strings.Contains(m[1], w) {
				ok = false
			}
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

// TestMetricsAndHealthEndpoints: /metrics exports every documented metric
// with values that move when events flow; /healthz answers; /readyz is
// ready with every system up and says which one is not when Postgres is
// down.
func TestMetricsAndHealthEndpoints(t *testing.T) {
	e := newEnv(t)
	n := e.startNATS()
	cfg := e.config(n.url(), e.dir)
	cfg.Tailer.StartAt = e.startAt()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Sink.FailingAfter = time.Second
	addrc := make(chan net.Addr, 1)
	stop := e.runApp(cfg, app.Options{HTTPReady: func(a net.Addr) { addrc <- a }})
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a.String()
	case <-time.After(30 * time.Second):
		t.Fatal("HTTP endpoint did not start")
	}
	must(t, newLoad(e, 21).run(e.ctx, 300))
	e.waitExact(time.Minute)
	time.Sleep(2500 * time.Millisecond) // one lag report

	code, body := httpGet(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, name := range metrics.Names {
		if slices.Contains(metrics.LaneNames, name) {
			continue // series only with sink.lanes (e2e/lanes_test.go runs them)
		}
		if !strings.Contains(body, "\n# TYPE "+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	read := metricSum(body, "cdc_events_read_total")
	published := metricSum(body, "cdc_events_published_total")
	applied := metricSum(body, "cdc_events_total", `outcome="applied"`)
	if read < 300 || published < 300 || applied == 0 {
		t.Fatalf("counters did not move: read %v published %v applied %v", read, published, applied)
	}
	if metricSum(body, "cdc_events_total", `collection="widgets"`, `operation="insert"`, `outcome="applied"`) == 0 {
		t.Error("no per-collection, per-operation applied count")
	}
	if metricSum(body, "cdc_sink_apply_seconds_count") == 0 || metricSum(body, "cdc_sink_batch_events_count") == 0 {
		t.Error("histograms did not observe batches")
	}
	if metricSum(body, "cdc_tailer_checkpoint_saved_timestamp_seconds") < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Error("checkpoint timestamp not set")
	}
	if v := metricSum(body, "cdc_replication_lag_events"); v != 0 {
		t.Errorf("caught up, yet lag is %v events", v)
	}

	if code, body := httpGet(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	code, body = httpGet(t, base+"/readyz")
	var rep metrics.Report
	must(t, json.Unmarshal([]byte(body), &rep))
	if code != 200 || !rep.Ready {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	for _, part := range []string{"mongo", "nats", "postgres", "tailer", "sink"} {
		if rep.Checks[part] != "ok" {
			t.Errorf("/readyz %s = %q", part, rep.Checks[part])
		}
	}

	c := pgtestShared()
	must(t, c.Stop(e.ctx))
	code, body = httpGet(t, base+"/readyz")
	must(t, json.Unmarshal([]byte(body), &rep))
	if code != http.StatusServiceUnavailable || rep.Ready || !strings.HasPrefix(rep.Checks["postgres"], "unreachable") {
		must(t, c.StartAgain(e.ctx))
		t.Fatalf("/readyz with Postgres down: %d %s", code, body)
	}
	// Batches that keep failing turn the sink itself unready past
	// sink.failing_after, naming it: "sink: failing since …", not "ok".
	must(t, newLoad(e, 23).run(e.ctx, 20))
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body = httpGet(t, base+"/readyz")
		rep = metrics.Report{}
		must(t, json.Unmarshal([]byte(body), &rep))
		if code == http.StatusServiceUnavailable && strings.HasPrefix(rep.Checks["sink"], "failing since") {
			break
		}
		if time.Now().After(deadline) {
			must(t, c.StartAgain(e.ctx))
			t.Fatalf("/readyz never said the sink is failing while Postgres is down: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	must(t, c.StartAgain(e.ctx))
	must(t, newLoad(e, 22).run(e.ctx, 50))
	e.waitExact(time.Minute)
	code, body = httpGet(t, base+"/readyz")
	rep = metrics.Report{}
	must(t, json.Unmarshal([]byte(body), &rep))
	if code != 200 || rep.Checks["sink"] != "ok" {
		t.Fatalf("/readyz after Postgres came back and the sink caught up: %d %s", code, body)
	}
	must(t, stop())

}
