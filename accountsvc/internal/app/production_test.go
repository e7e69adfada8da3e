package app_test

import (
	"testing"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/config/configtest"
)

// accountsvcSecrets are the secret settings accountsvc reads.
var accountsvcSecrets = []string{"JWT_SECRET", "JWT_PREVIOUS_SECRETS", "CHALLENGE_TOKEN", "CHALLENGE_PREVIOUS_TOKENS",
	"ADMIN_TOKEN", "LINK_KEY_SECRET", "SENDGRID_API_KEY", "STORAGE_ACCESS_KEY", "STORAGE_ACCESS_KEY_AUDIO",
	"STORAGE_ACCESS_KEY_VIDEO", "DATABASE_URL", "REDIS_URL"}

// TestProductionRefusesTheDeployExamples: with ENVIRONMENT=production, every
// example configuration in deploy/ taken as is stops accountsvc at start
// (LoadConfig, as cmd/accountsvc calls it), naming every offending secret.
func TestProductionRefusesTheDeployExamples(t *testing.T) {
	t.Parallel()
	for _, ex := range configtest.DeployExamples(t, "accountsvc") {
		ex.Env["ENVIRONMENT"] = "production"
		_, err := app.LoadConfig(config.FromMap(ex.Env))
		t.Logf("%s:\n%v", ex.Name, err)
		configtest.RequireRefused(t, err, ex, accountsvcSecrets)
	}
}
