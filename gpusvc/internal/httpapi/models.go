package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"
)

// modelsEntry is one model in GET /models.
type modelsEntry struct {
	ModelID     string   `json:"model_id"`
	Backend     string   `json:"backend"`
	Available   bool     `json:"available"`
	Operations  []string `json:"operations"`
	Description string   `json:"description"`
}

func (h *handlers) listModels(ctx context.Context) ([]modelsEntry, error) {
	list, err := h.Registry.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]modelsEntry, len(list))
	for i, m := range list {
		ops := make([]string, len(m.Operations))
		for j, op := range m.Operations {
			ops[j] = string(op)
		}
		out[i] = modelsEntry{ModelID: m.ID, Backend: m.Backend, Available: m.Available, Operations: ops, Description: m.Description}
	}
	return out, nil
}

// handleModelList is GET /models: every enabled model, the backend serving
// it on this host and the operations it offers there.
func (h *handlers) handleModelList(c echo.Context) error {
	list, err := h.listModels(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, list)
}
