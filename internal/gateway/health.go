package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/dsqlgate/dsqlgate/config"
)

// health serves /livez, /readyz and /startupz, and /metrics.
type health struct {
	g     *Gateway
	start atomic.Bool
	drain atomic.Bool

	mu         sync.Mutex // guards the cached route checks
	checked    time.Time
	lastRoutes map[string]string
}

// readyCacheFor bounds how often /readyz checks the routes.
const readyCacheFor = 2 * time.Second

func newHealth(g *Gateway) *health { return &health{g: g} }

func (h *health) started()  { h.start.Store(true) }
func (h *health) draining() { h.drain.Store(true) }

func (h *health) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(h.g.Metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/startupz", func(w http.ResponseWriter, r *http.Request) {
		if !h.start.Load() {
			http.Error(w, "starting\n", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", h.ready)
	return mux
}

// readyReport is /readyz's body.
type readyReport struct {
	Ready  bool              `json:"ready"`
	Reason string            `json:"reason,omitempty"`
	Routes map[string]string `json:"routes"`
}

// ready answers whether the gateway can serve: started, not draining, and
// every route either has an upstream open or can mint a token (kind dsql)
// or dial (kind postgres). A failing route is named with the reason.
func (h *health) ready(w http.ResponseWriter, r *http.Request) {
	rep := readyReport{Ready: true, Routes: h.routes(r.Context())}
	switch {
	case !h.start.Load():
		rep.Ready, rep.Reason = false, "starting"
	case h.drain.Load():
		rep.Ready, rep.Reason = false, "draining"
	}
	for name, status := range rep.Routes {
		if status != "ok" {
			rep.Ready = false
			if rep.Reason == "" {
				rep.Reason = "route " + name + " is failing"
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !rep.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(rep)
}

// routes checks each route, at most every readyCacheFor.
func (h *health) routes(ctx context.Context) map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.checked) < readyCacheFor && h.lastRoutes != nil {
		return h.lastRoutes
	}
	out := map[string]string{}
	routes := h.g.Bridge.Routes()
	sort.Slice(routes, func(i, j int) bool { return routes[i].Name < routes[j].Name })
	for _, rt := range routes {
		if rt.Pool().Stats().Open > 0 {
			out[rt.Name] = "ok"
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		if rt.Kind() == config.KindDSQL {
			_, err = rt.Minter().Mint(cctx)
		} else {
			sc, aerr := rt.Pool().TryAcquire(cctx, "") // runs nothing: stays claimable by any user
			err = aerr
			if sc != nil {
				rt.Pool().Release(sc)
			}
		}
		cancel()
		if err != nil {
			out[rt.Name] = err.Error()
			h.g.log.Warn("readiness check failed", zap.String("route", rt.Name), zap.Error(err))
		} else {
			out[rt.Name] = "ok"
		}
	}
	h.checked, h.lastRoutes = time.Now(), out
	return out
}
