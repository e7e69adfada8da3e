package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/config"
)

// TestLoadMetricsAddr covers the METRICS_ADDR rule: loopback on the HTTP
// port + 1000 by default, "off" for none, an explicit address as given,
// and a bad value or the public address itself refused by name.
func TestLoadMetricsAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, http, env, want, err string
	}{
		{name: "default from wildcard", http: "0.0.0.0:8080", want: "127.0.0.1:9080"},
		{name: "default from loopback", http: "127.0.0.1:8081", want: "127.0.0.1:9081"},
		{name: "port 0 stays 0", http: "127.0.0.1:0", want: "127.0.0.1:0"},
		{name: "off", http: ":8080", env: "off", want: ""},
		{name: "explicit", http: ":8080", env: "0.0.0.0:9100", want: "0.0.0.0:9100"},
		{name: "garbage", http: ":8080", env: "metrics", err: "METRICS_ADDR"},
		{name: "same as public", http: "0.0.0.0:8080", env: "0.0.0.0:8080", err: "METRICS_ADDR"},
		{name: "port overflow", http: ":65000", err: "METRICS_ADDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			if tc.env != "" {
				env["METRICS_ADDR"] = tc.env
			}
			l := config.FromMap(env)
			got := config.LoadMetricsAddr(l, tc.http)
			if tc.err != "" {
				require.ErrorContains(t, l.Err(), tc.err)
				return
			}
			require.NoError(t, l.Err())
			require.Equal(t, tc.want, got)
		})
	}
}
