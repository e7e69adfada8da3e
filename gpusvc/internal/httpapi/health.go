package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"
)

// healthResponse is the legacy health body plus this host's capacity, which
// the proxy's balancer reads.
type healthResponse struct {
	Message  string   `json:"message"`
	Slots    int      `json:"slots"`
	InFlight int      `json:"in_flight"`
	Queued   int      `json:"queued"`
	Queue    int      `json:"queue_size"`
	Backend  string   `json:"backend"`
	Backends []string `json:"backends"`
	Models   []string `json:"models"`
	// Redis is "ok" or "degraded" (fails open, not a reason to eject).
	Redis string `json:"redis,omitempty"`
}

// handleHealth is GET /health: 200 with the legacy message and the capacity
// when the database answers, else 503. Redis is reported, not required.
func (h *handlers) handleHealth(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	resp := healthResponse{
		Message:  "API is up and running!",
		Slots:    h.Capacity.Slots(),
		InFlight: h.Capacity.InFlight(),
		Queued:   h.Capacity.Queued(),
		Queue:    h.Capacity.QueueSize(),
		Backend:  h.Registry.DefaultBackend(),
		Backends: h.Registry.Backends(),
		Models:   []string{},
	}
	if h.RedisStatus != nil {
		resp.Redis = h.RedisStatus(ctx)
	}
	err := h.Ping(ctx)
	if err == nil {
		var list []modelsEntry
		if list, err = h.listModels(ctx); err == nil {
			for _, m := range list {
				if m.Available {
					resp.Models = append(resp.Models, m.ModelID)
				}
			}
		}
	}
	if err != nil {
		h.log.Warn("health check failed", zap.Error(err))
		resp.Message = "API is unavailable"
		return c.JSON(http.StatusServiceUnavailable, resp)
	}
	return c.JSON(http.StatusOK, resp)
}
