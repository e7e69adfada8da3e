package app_test

import (
	"testing"

	"github.com/nounsai/sdserver/proxy/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/config/configtest"
)

// proxySecrets are the secret settings the proxy reads.
var proxySecrets = []string{"JWT_SECRET", "JWT_PREVIOUS_SECRETS", "CHALLENGE_TOKEN", "CHALLENGE_PREVIOUS_TOKENS",
	"ADMIN_TOKEN", "DATABASE_URL", "REDIS_URL"}

// TestProductionRefusesTheDeployExamples: with ENVIRONMENT=production, every
// example configuration in deploy/ taken as is stops the proxy at start (as
// cmd/proxy loads it), naming every offending secret.
func TestProductionRefusesTheDeployExamples(t *testing.T) {
	t.Parallel()
	for _, ex := range configtest.DeployExamples(t, "proxy") {
		ex.Env["ENVIRONMENT"] = "production"
		_, err := app.LoadConfig(config.FromMap(ex.Env))
		t.Logf("%s:\n%v", ex.Name, err)
		configtest.RequireRefused(t, err, ex, proxySecrets)
	}
}
