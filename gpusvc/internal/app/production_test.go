package app_test

import (
	"testing"

	"github.com/nounsai/sdserver/gpusvc/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/config/configtest"
)

// gpusvcSecrets are the secret settings gpusvc reads.
var gpusvcSecrets = []string{"JWT_SECRET", "JWT_PREVIOUS_SECRETS", "CHALLENGE_TOKEN", "CHALLENGE_PREVIOUS_TOKENS",
	"ADMIN_TOKEN", "SENDGRID_API_KEY", "STORAGE_ACCESS_KEY", "STORAGE_ACCESS_KEY_AUDIO", "STORAGE_ACCESS_KEY_VIDEO",
	"REPLICATE_API_TOKEN", "VIDEO_WEBHOOK_URL", "DATABASE_URL", "REDIS_URL"}

// TestProductionRefusesTheDeployExamples: with ENVIRONMENT=production, every
// example configuration in deploy/ taken as is stops gpusvc at start
// (LoadConfig, as cmd/gpusvc calls it), naming every offending secret.
func TestProductionRefusesTheDeployExamples(t *testing.T) {
	t.Parallel()
	for _, ex := range configtest.DeployExamples(t, "gpusvc") {
		ex.Env["ENVIRONMENT"] = "production"
		_, err := app.LoadConfig(config.FromMap(ex.Env))
		t.Logf("%s:\n%v", ex.Name, err)
		configtest.RequireRefused(t, err, ex, gpusvcSecrets)
	}
}
