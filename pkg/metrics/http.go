package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
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
type Health struct {
	mu     sync.Mutex
	checks map[string]func(context.Context) error
	alive  map[string]*liveness
	// states are what components say of themselves (State).
	states map[string]componentState
	now    func() time.Time
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
	return &Health{checks: map[string]func(context.Context) error{}, alive: map[string]*liveness{}, states: map[string]componentState{}, now: time.Now}
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
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Ready = false
				rep.Checks[name] = "unreachable: " + err.Error()
			} else {
				rep.Checks[name] = "ok"
			}
		}()
	}
	wg.Wait()
	return rep
}

// Handler serves /metrics, /healthz and /readyz.
func Handler(m *Metrics, h *Health) http.Handler {
	mux := http.NewServeMux()
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

// Serve listens on addr until ctx ends. It returns the bound address on
// start-up (addr may use port 0) through ready, and a listen error as the
// result.
func Serve(ctx context.Context, addr string, handler http.Handler, log *zap.Logger, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http %s: %w", addr, err)
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
	log.Info("serving /metrics, /healthz, /readyz", zap.String("addr", ln.Addr().String()))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http %s: %w", addr, err)
	}
	return nil
}
