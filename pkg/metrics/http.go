package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"go.uber.org/zap"
)

// Health answers /healthz and /readyz.
//
//   - /healthz: the process is up and its HTTP server answers. A failing
//     /healthz means restart the process.
//   - /readyz: every system is reachable now (each Check passes within 2 s)
//     and every component made progress recently (its loop reported Alive
//     within its window: a stuck loop turns not ready even when the
//     systems answer). A failing /readyz means look at the logs; the
//     process keeps retrying on its own.
//
// A /readyz line names the system or component and the class of its
// trouble ("unreachable: connection refused", "failing since …",
// "standby …"), never an error's text: errors name users, databases and
// hosts, and /readyz answers anyone who reaches the port. The full error
// of a failed check is logged (SetLogger) when it first appears or
// changes, and again when the check passes.
type Health struct {
	mu     sync.Mutex
	checks map[string]func(context.Context) error
	alive  map[string]*liveness
	// states are what components say of themselves (State).
	states map[string]componentState
	now    func() time.Time
	log    *zap.Logger
	// failed is the last logged error text of each failing check.
	failed map[string]string
}

type componentState struct {
	text  string
	ready bool
}

// State records what a component says of itself: text replaces "ok" in
// /readyz while it is not empty, and ready false makes /readyz fail (503)
// naming the component. text "" with ready true clears it.
func (h *Health) State(name, text string, ready bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if text == "" && ready {
		delete(h.states, name)
		return
	}
	h.states[name] = componentState{text: text, ready: ready}
}

type liveness struct {
	last   time.Time
	window time.Duration
}

// NewHealth returns an empty Health.
func NewHealth() *Health {
	return &Health{checks: map[string]func(context.Context) error{}, alive: map[string]*liveness{}, states: map[string]componentState{},
		now: time.Now, log: zap.NewNop(), failed: map[string]string{}}
}

// SetLogger sets where failed checks' full errors are logged (default:
// nowhere).
func (h *Health) SetLogger(log *zap.Logger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = log
}

// noteCheck logs a check's failure when it is new or its error changed,
// and its recovery; a probe every few seconds logs nothing new while an
// outage lasts.
func (h *Health) noteCheck(name string, err error, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	last, wasFailing := h.failed[name]
	switch {
	case err == nil && wasFailing:
		delete(h.failed, name)
		h.log.Info("readiness check passes again", zap.String("system", name))
	case err != nil && err.Error() != last:
		h.failed[name] = err.Error()
		h.log.Warn("readiness check failed", zap.String("system", name), zap.String("reason", reason), zap.Error(err))
	}
}

// Check registers a reachability check (ping).
func (h *Health) Check(name string, f func(context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = f
}

// Expect registers a component that must report Alive at least once per
// window.
func (h *Health) Expect(name string, window time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.alive[name] = &liveness{last: h.now(), window: window}
}

// Alive records progress of a component.
func (h *Health) Alive(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if l, ok := h.alive[name]; ok {
		l.last = h.now()
	}
}

// Report is the /readyz body.
type Report struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// Ready runs the checks.
func (h *Health) Ready(ctx context.Context) Report {
	h.mu.Lock()
	checks := make(map[string]func(context.Context) error, len(h.checks))
	for k, v := range h.checks {
		checks[k] = v
	}
	rep := Report{Ready: true, Checks: map[string]string{}}
	now := h.now()
	for name, l := range h.alive {
		if age := now.Sub(l.last); age > l.window {
			rep.Ready = false
			rep.Checks[name] = fmt.Sprintf("no progress for %s (window %s)", age.Round(time.Second), l.window)
		} else {
			rep.Checks[name] = "ok"
		}
	}
	for name, st := range h.states {
		if cur, ok := rep.Checks[name]; ok && cur != "ok" {
			continue // no progress says more
		}
		rep.Checks[name] = st.text
		if !st.ready {
			rep.Ready = false
		}
	}
	h.mu.Unlock()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, f := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			err := f(cctx)
			var reason string
			if err != nil {
				reason = reasonClass(err)
			}
			h.noteCheck(name, err, reason)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Ready = false
				rep.Checks[name] = "unreachable: " + reason
			} else {
				rep.Checks[name] = "ok"
			}
		}()
	}
	wg.Wait()
	return rep
}

// HandlerOption changes what Handler serves.
type HandlerOption func(*handlerOptions)

type handlerOptions struct{ pprof bool }

// WithProfiling serves /debug/pprof/ when on (http.pprof).
func WithProfiling(on bool) HandlerOption { return func(o *handlerOptions) { o.pprof = on } }

// Handler serves /metrics, /healthz and /readyz, and with the option
// WithProfiling the Go runtime's profiles under /debug/pprof/
// (net/http/pprof: heap, allocs, goroutine, profile, trace), the evidence
// for where memory and CPU go (docs/benchmark.md).
func Handler(m *Metrics, h *Health, opts ...HandlerOption) http.Handler {
	var o handlerOptions
	for _, opt := range opts {
		opt(&o)
	}
	mux := http.NewServeMux()
	if o.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		rep := h.Ready(r.Context())
		w.Header().Set("Content-Type", "application/json")
		if !rep.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
	return mux
}

// ServeConfig says where and how Serve listens.
type ServeConfig struct {
	// Addr is the listen address (host:port; port 0 picks one).
	Addr string
	// WebConfigFile is a Prometheus web configuration file (TLS, basic
	// auth); empty serves plain HTTP without authentication.
	WebConfigFile string
}

// Serve listens on cfg.Addr until ctx ends. It returns the bound address
// on start-up (the port may be 0) through ready, and a listen error, or
// an invalid web configuration file, as the result (then ready is not
// called).
//
// TLS and basic auth come from github.com/prometheus/exporter-toolkit/web
// rather than code of our own: it is the format Prometheus, Alertmanager
// and every official exporter read (web.config.file), so operators and
// their tooling already know it; it checks bcrypt hashes with a fixed
// cost per attempt whether or not the user exists (no user enumeration by
// timing), caches successful checks, and re-reads the file on every
// request and TLS handshake, so passwords and certificates rotate with no
// restart. The file applies to every path, /healthz and /readyz
// included.
func Serve(ctx context.Context, cfg ServeConfig, handler http.Handler, log *zap.Logger, ready func(net.Addr)) error {
	if cfg.WebConfigFile != "" {
		// web.Validate reads the file, the bcrypt hashes and the
		// certificates; web.Serve would find the same errors only
		// after the listener is up.
		if err := web.Validate(cfg.WebConfigFile); err != nil {
			return fmt.Errorf("http.web_config_file %s: %w", cfg.WebConfigFile, err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("http %s: %w", cfg.Addr, err)
	}
	if cfg.WebConfigFile == "" && !loopback(ln.Addr()) {
		log.Warn("the HTTP endpoint listens beyond loopback with no TLS and no authentication: set http.web_config_file (docs/http.md)",
			zap.String("addr", ln.Addr().String()))
	}
	if ready != nil {
		ready(ln.Addr())
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving /metrics, /healthz, /readyz", zap.String("addr", ln.Addr().String()),
		zap.String("web_config_file", cfg.WebConfigFile))
	file := cfg.WebConfigFile
	err = web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &file}, newSlog(log.Named("web")))
	// web.Serve returns before serving when the file turned invalid since
	// Validate; the listener is then still open.
	_ = ln.Close()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http %s: %w", cfg.Addr, err)
	}
	return nil
}

// loopback reports whether a is a loopback address (127.0.0.0/8, ::1).
func loopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
