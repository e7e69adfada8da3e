// Command proxy is the public entry (proxy.nounsai.wtf): it balances
// generation requests across the GPU hosts listed in api_hosts and forwards
// every other route to accountsvc. `proxy migrate` applies the database
// migrations and exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

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

// run is the skeleton wiring; the proxy's data path replaces it.
func run(ctx context.Context, args []string, lookup config.LookupFunc) error {
	l, err := config.NewLoader(lookup)
	if err != nil {
		return err
	}
	cfg := config.LoadCommon(l, "127.0.0.1:8080")
	if err := errors.Join(l.Err(), cfg.Validate()); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log, err := logging.New(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("service", "proxy"))
	if len(args) > 0 {
		if args[0] == "migrate" {
			return migrate.Up(ctx, cfg.DatabaseURL, log)
		}
		return fmt.Errorf("unknown command %q (commands: migrate)", args[0])
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
	e := web.New(web.Options{Service: "proxy", Log: log, Registry: reg, BodyLimit: cfg.BodyLimit})
	e.GET("/health", func(c echo.Context) error {
		hctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := pool.Ping(hctx); err != nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"message": "API is unavailable"})
		}
		return c.JSON(http.StatusOK, map[string]string{"message": "API is up and running!"})
	})
	ln, err := web.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	return web.Serve(ctx, web.NewServer(e), ln, log, cfg.ShutdownTimeout)
}
