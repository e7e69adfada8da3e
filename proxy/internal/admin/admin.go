// Package admin serves the proxy's own routes with echo: GET /health,
// GET /admin/hosts (admin token, through adminguard; hosts and the
// admission queue) and GET|POST
// /refresh_hosts (the legacy reload, challenge token checked by the caller). /metrics is registered by
// shared/web.
//
// This package must never forward requests to upstreams.
package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/proxy/internal/admission"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/apperr"
)

// Reloader reloads the GPU host registry at once.
type Reloader interface {
	Reload(ctx context.Context) ([]*balancer.Upstream, error)
}

// Handler holds what the routes read.
type Handler struct {
	// GPU and Account are the upstream pools.
	GPU, Account *balancer.Pool
	// Policy is the GPU balancing policy name, for /admin/hosts.
	Policy string
	// Hosts reloads api_hosts for /refresh_hosts.
	Hosts Reloader
	// Admin guards /admin/hosts: adminguard.Guard.Token (per-IP limit,
	// audit line, admin token). Required.
	Admin echo.MiddlewareFunc
	// Queue, when set, returns the admission queue's state for
	// /admin/hosts.
	Queue func() admission.Snapshot
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Paths are the paths Routes serves; the proxy sends every other path to
// the data path.
var Paths = []string{"/health", "/metrics", "/admin/hosts", "/refresh_hosts"}

// Routes registers the routes on e.
func (h *Handler) Routes(e *echo.Echo) {
	e.GET("/health", h.handleHealth)
	e.GET("/admin/hosts", h.handleHostsList, h.Admin)
	e.GET("/refresh_hosts", h.handleHostsRefresh)
	e.POST("/refresh_hosts", h.handleHostsRefresh)
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func countAvailable(p *balancer.Pool, now time.Time) int {
	n := 0
	for _, u := range p.Hosts() {
		if u.Available(now) {
			n++
		}
	}
	return n
}

type healthResponse struct {
	Message        string `json:"message"`
	GPUHosts       int    `json:"gpu_hosts_available"`
	AccountHosts   int    `json:"account_hosts_available"`
	GPUHostsTotal  int    `json:"gpu_hosts"`
	AccountsTotals int    `json:"account_hosts"`
}

// handleHealth answers 200 while the proxy serves; the counts tell how many
// upstreams it can reach.
func (h *Handler) handleHealth(c echo.Context) error {
	now := h.now()
	return c.JSON(http.StatusOK, healthResponse{
		Message:        "API is up and running!",
		GPUHosts:       countAvailable(h.GPU, now),
		AccountHosts:   countAvailable(h.Account, now),
		GPUHostsTotal:  len(h.GPU.Hosts()),
		AccountsTotals: len(h.Account.Hosts()),
	})
}

type hostsResponse struct {
	Policy  string            `json:"policy"`
	GPU     []balancer.Status `json:"gpu"`
	Account []balancer.Status `json:"account"`
	// Admission is the GPU admission queue (per user: waiting, in flight,
	// longest wait); absent when the proxy has none.
	Admission *admission.Snapshot `json:"admission,omitempty"`
}

func statuses(p *balancer.Pool, now time.Time) []balancer.Status {
	hosts := p.Hosts()
	out := make([]balancer.Status, 0, len(hosts))
	for _, u := range hosts {
		out = append(out, u.Status(now))
	}
	return out
}

// handleHostsList returns every upstream with its state, health, load,
// reported capacity, learned speed, error counts and last check.
func (h *Handler) handleHostsList(c echo.Context) error {
	now := h.now()
	out := hostsResponse{
		Policy:  h.Policy,
		GPU:     statuses(h.GPU, now),
		Account: statuses(h.Account, now),
	}
	if h.Queue != nil {
		q := h.Queue()
		out.Admission = &q
	}
	return c.JSON(http.StatusOK, out)
}

type refreshResponse struct {
	Hosts []string `json:"hosts"`
}

// handleHostsRefresh reloads api_hosts at once and lists the addresses now
// in the GPU pool (the legacy proxy meant to; it answered 500, P2).
func (h *Handler) handleHostsRefresh(c echo.Context) error {
	ups, err := h.Hosts.Reload(c.Request().Context())
	if err != nil {
		return apperr.Wrap(apperr.KindUnavailable, "Could not reload the hosts", err)
	}
	out := refreshResponse{Hosts: make([]string, 0, len(ups))}
	for _, u := range ups {
		out.Hosts = append(out.Hosts, u.Address)
	}
	return c.JSON(http.StatusOK, out)
}
