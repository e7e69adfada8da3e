package service_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/service"
)

type testConfig struct {
	config.Common
	metricsAddr string
}

func (c testConfig) MetricsListenAddr() string { return c.metricsAddr }

func loadTest(l *config.Loader) (testConfig, error) {
	c := testConfig{Common: config.LoadCommon(l, "127.0.0.1:0"), metricsAddr: l.String("METRICS_ADDR", "", "")}
	return c, l.Check(c.Validate())
}

type testApp struct {
	addr, metrics net.Addr
	closed        bool
}

func (a *testApp) Serve(ctx context.Context, ln, metrics net.Listener) error {
	a.addr = ln.Addr()
	if metrics != nil {
		a.metrics = metrics.Addr()
		defer metrics.Close()
	}
	<-ctx.Done()
	return ln.Close()
}

func (a *testApp) Close() { a.closed = true }

func lookup(env map[string]string) config.LookupFunc {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestBinaryRun(t *testing.T) {
	t.Parallel()
	var app *testApp
	var greeted []string
	b := service.Binary[testConfig, *testApp]{
		Name: "testsvc",
		Load: loadTest,
		New: func(context.Context, testConfig, *zap.Logger) (*testApp, error) {
			app = &testApp{}
			return app, nil
		},
		Commands: map[string]service.Command[testConfig]{
			"greet": func(_ context.Context, args []string, _ testConfig, _ *zap.Logger) error {
				greeted = args
				return nil
			},
		},
	}
	env := map[string]string{"LOG_LEVEL": "error"}

	// A subcommand runs with the arguments after its name; New is not called.
	require.NoError(t, b.Run(t.Context(), []string{"greet", "a", "b"}, lookup(env)))
	require.Equal(t, []string{"a", "b"}, greeted)
	require.Nil(t, app)
	err := b.Run(t.Context(), []string{"fly"}, lookup(env))
	require.EqualError(t, err, `unknown command "fly" (commands: migrate, greet, healthcheck)`)

	// A bad setting stops the start before New.
	err = b.Run(t.Context(), nil, lookup(map[string]string{"LOG_FORMAT": "xml"}))
	require.ErrorContains(t, err, "config: LOG_FORMAT")
	require.Nil(t, app)

	// Without arguments: New, a listener on HTTP_ADDR, Serve until ctx
	// ends, then Close.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	require.NoError(t, b.Run(ctx, nil, lookup(env)))
	require.NotNil(t, app)
	require.Equal(t, "127.0.0.1", app.addr.(*net.TCPAddr).IP.String())
	require.True(t, app.closed)
	require.Nil(t, app.metrics, "no metrics address: no metrics listener")

	// A config with a metrics address (MetricsConfig): Serve gets a
	// second listener on it.
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	require.NoError(t, b.Run(ctx, nil, lookup(map[string]string{"LOG_LEVEL": "error", "METRICS_ADDR": "127.0.0.1:0"})))
	require.NotNil(t, app.metrics)
	require.NotEqual(t, app.addr, app.metrics)
	err = b.Run(t.Context(), nil, lookup(map[string]string{"LOG_LEVEL": "error", "METRICS_ADDR": "256.0.0.1:1"}))
	require.ErrorContains(t, err, "METRICS_ADDR")

	// A failing New is returned as is.
	b.New = func(context.Context, testConfig, *zap.Logger) (*testApp, error) {
		return nil, errors.New("no database")
	}
	require.EqualError(t, b.Run(t.Context(), nil, lookup(env)), "no database")
}
