// Command accountsvc serves accounts, credits and the user's library
// (api-cpu.nounsai.wtf). Subcommands: `migrate` applies the database
// migrations and exits; `credits grant|balance` manages credit grants;
// `template create` stores a deep-link template image; `healthcheck` probes
// a running instance's /health (for container HEALTHCHECKs).
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/logging"
	"github.com/nounsai/sdserver/shared/migrate"
	"github.com/nounsai/sdserver/shared/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "accountsvc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, lookup config.LookupFunc) error {
	l, err := config.NewLoader(lookup)
	if err != nil {
		return err
	}
	cfg, err := app.LoadConfig(l)
	if err != nil {
		return err
	}
	log, err := logging.New(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("service", "accountsvc"))

	if len(args) > 0 {
		switch args[0] {
		case "migrate":
			return migrate.Up(ctx, cfg.DatabaseURL, log)
		case "credits":
			return runCredits(ctx, args[1:], cfg, os.Stdout)
		case "template":
			return runTemplate(ctx, args[1:], cfg, log, os.Stdout)
		case "healthcheck":
			return web.Probe(ctx, cfg.HTTPAddr)
		default:
			return fmt.Errorf("unknown command %q (commands: migrate, credits, template, healthcheck)", args[0])
		}
	}

	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := web.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	var metrics net.Listener
	if cfg.MetricsAddr != "" {
		if metrics, err = web.Listen(cfg.MetricsAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("METRICS_ADDR: %w", err)
		}
	}
	return a.Serve(ctx, ln, metrics)
}
