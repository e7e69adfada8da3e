// Package service holds what every service binary (cmd/proxy,
// cmd/accountsvc, cmd/gpusvc) does the same way around its own wiring:
// the signal context and exit status, loading the configuration, the
// logger, the subcommands every binary answers (migrate, healthcheck), the
// listener, the connections every service opens (Open) and, for a service
// that routes with echo, its router on them (OpenWeb), and the order in
// which an app serves, drains and stops (Lifecycle).
//
// This package must never know a service's routes, stores or own
// settings: each binary's main passes them in (Binary), and the service's
// internal/app package builds everything else.
package service

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/logging"
	"github.com/nounsai/sdserver/shared/migrate"
	"github.com/nounsai/sdserver/shared/web"
)

// Config is a service's configuration. Every service's Config embeds
// config.Common, whose Shared method it thereby has.
type Config interface {
	Shared() config.Common
}

// MetricsConfig is implemented by the configuration of a service that
// serves /metrics on an internal listener of its own (METRICS_ADDR), never
// on its public one: Run opens that listener and passes it to Serve. A
// service without it (gpusvc, whose port is private) serves /metrics itself.
type MetricsConfig interface {
	// MetricsListenAddr is the metrics listener's address; "" for none.
	MetricsListenAddr() string
}

// App is a built service. Serve serves on ln, and GET /metrics on metrics
// (nil: the service has no separate metrics listener), until ctx ends, then
// shuts down gracefully; Close releases what the service opened.
type App interface {
	Serve(ctx context.Context, ln, metrics net.Listener) error
	Close()
}

// Command is a binary's own subcommand, run with the arguments after its
// name.
type Command[C Config] func(ctx context.Context, args []string, cfg C, log *zap.Logger) error

// Binary describes one service binary. Every field but Commands is
// required.
type Binary[C Config, A App] struct {
	// Name names the service in log lines (field service) and in the
	// error printed when the binary fails.
	Name string
	// Load reads and validates the configuration (the service's
	// LoadConfig).
	Load func(l *config.Loader) (C, error)
	// New builds the service, opening its connections.
	New func(ctx context.Context, cfg C, log *zap.Logger) (A, error)
	// Commands are the binary's subcommands besides migrate and
	// healthcheck; nil means none.
	Commands map[string]Command[C]
}

// Main runs b (see Run) with a context that ends at SIGINT or SIGTERM, the
// command-line arguments and the process environment; when Run fails it
// prints "<name>: <error>" to stderr and exits with status 1.
func Main[C Config, A App](b Binary[C, A]) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := b.Run(ctx, os.Args[1:], os.LookupEnv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, b.Name+":", err)
		os.Exit(1)
	}
}

// Run loads the configuration from lookup (and the legacy config.json
// CONFIG_FILE names), builds the logger (LOG_FORMAT, LOG_LEVEL) and, when
// args name a subcommand, runs it. Otherwise it builds the service with
// New, listens on HTTP_ADDR and serves until ctx ends; then it closes the
// service.
func (b Binary[C, A]) Run(ctx context.Context, args []string, lookup config.LookupFunc) error {
	l, err := config.NewLoader(lookup)
	if err != nil {
		return err
	}
	cfg, err := b.Load(l)
	if err != nil {
		return err
	}
	c := cfg.Shared()
	log, err := logging.New(c.LogFormat, c.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("service", b.Name))
	if len(args) > 0 {
		return b.command(ctx, args, cfg, log)
	}

	a, err := b.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := web.Listen(c.HTTPAddr)
	if err != nil {
		return err
	}
	var metrics net.Listener
	if m, ok := any(cfg).(MetricsConfig); ok && m.MetricsListenAddr() != "" {
		if metrics, err = web.Listen(m.MetricsListenAddr()); err != nil {
			_ = ln.Close()
			return fmt.Errorf("METRICS_ADDR: %w", err)
		}
	}
	return a.Serve(ctx, ln, metrics)
}

// command runs the subcommand args[0]: migrate applies the database
// migrations to DATABASE_URL, healthcheck probes the /health of the
// instance on HTTP_ADDR (for container HEALTHCHECKs), any other is one of
// b.Commands.
func (b Binary[C, A]) command(ctx context.Context, args []string, cfg C, log *zap.Logger) error {
	c := cfg.Shared()
	switch args[0] {
	case "migrate":
		return migrate.Up(ctx, c.DatabaseURL, log)
	case "healthcheck":
		return web.Probe(ctx, c.HTTPAddr)
	}
	if cmd, ok := b.Commands[args[0]]; ok {
		return cmd(ctx, args[1:], cfg, log)
	}
	names := append(append([]string{"migrate"}, slices.Sorted(maps.Keys(b.Commands))...), "healthcheck")
	return fmt.Errorf("unknown command %q (commands: %s)", args[0], strings.Join(names, ", "))
}
