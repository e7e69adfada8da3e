// Command proxy is the public entry (proxy.nounsai.wtf): it balances
// generation requests across the GPU hosts listed in api_hosts and forwards
// every other route to accountsvc. `proxy migrate` applies the database
// migrations and exits; `proxy healthcheck` probes a running instance's
// /health (for container HEALTHCHECKs).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/proxy/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/logging"
	"github.com/nounsai/sdserver/shared/migrate"
	"github.com/nounsai/sdserver/shared/rdb"
	"github.com/nounsai/sdserver/shared/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(1)
	}
}

// run loads the configuration, opens the database and Redis, and runs the
// proxy (internal/app) until ctx ends.
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
	log = log.With(zap.String("service", "proxy"))
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
	pool, err := db.Open(ctx, cfg.DatabaseURL, db.Options{})
	if err != nil {
		return err
	}
	defer pool.Close()
	rc, err := rdb.Open(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := web.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	// The access log (a line per forwarded request) is buffered so a slow
	// log reader never stalls the data path; flushed at shutdown.
	accessLog, stopAccessLog, err := logging.NewBuffered(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	defer stopAccessLog()
	return app.Run(ctx, cfg, log, app.Deps{DB: pool, Redis: rc, Registry: reg,
		AccessLog: accessLog.With(zap.String("service", "proxy"))}, ln)
}
