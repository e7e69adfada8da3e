package app_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/worker"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

// TestServesEveryGPURoute: gpusvc answers every route of the shared table
// the proxy sends to GPU hosts (none is a 404 or 405 here).
func TestServesEveryGPURoute(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Worker = worker.LoadConfig(config.FromMap(map[string]string{"WORKER_CONCURRENCY": "1"}))
	s := start(t, cfg)
	for _, r := range gpuroute.All() {
		var res response
		if r.Method() == http.MethodGet {
			res = s.get(t, r.Path())
		} else {
			res = s.post(t, r.Path(), "", `{}`)
		}
		require.NotContains(t, []int{http.StatusNotFound, http.StatusMethodNotAllowed}, res.status, "%s %s: %s", r.Method(), r.Path(), res.body)
	}
}
