// Command accountsvc serves accounts, credits and the user's library
// (api-cpu.nounsai.wtf). Subcommands: `migrate` applies the database
// migrations and exits; `credits grant|balance` manages credit grants;
// `template create` stores a deep-link template image; `healthcheck` probes
// a running instance's /health (for container HEALTHCHECKs).
package main

import (
	"context"
	"os"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/service"
)

func main() {
	service.Main(service.Binary[app.Config, *app.App]{
		Name: "accountsvc",
		Load: app.LoadConfig,
		New:  app.New,
		Commands: map[string]service.Command[app.Config]{
			"credits": func(ctx context.Context, args []string, cfg app.Config, _ *zap.Logger) error {
				return runCredits(ctx, args, cfg, os.Stdout)
			},
			"template": func(ctx context.Context, args []string, cfg app.Config, log *zap.Logger) error {
				return runTemplate(ctx, args, cfg, log, os.Stdout)
			},
		},
	})
}
