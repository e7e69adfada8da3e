// Command gpusvc serves image generation and the model routes on one GPU
// host (one process per GPU) and runs the workers for long audio and video
// jobs. `gpusvc migrate` applies the database migrations and exits;
// `gpusvc healthcheck` probes a running instance's /health.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/app"
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
		fmt.Fprintln(os.Stderr, "gpusvc:", err)
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
	log = log.With(zap.String("service", "gpusvc"))

	if len(args) > 0 {
		switch args[0] {
		case "migrate":
			return migrate.Up(ctx, cfg.DatabaseURL, log)
		case "healthcheck":
			return web.Probe(ctx, cfg.HTTPAddr)
		default:
			return fmt.Errorf("unknown command %q (commands: migrate, healthcheck)", args[0])
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
	return a.Serve(ctx, ln)
}
