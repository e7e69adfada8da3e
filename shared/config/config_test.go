package config_test

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/config"
)

func TestLegacyConfigFileAndEnvPrecedence(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"secret_key": "legacy-secret-kept-out-of-the-repo-0123456789", "challenge_token": "legacy-ct",
		"environment": "production", "default_credit_expiration": 45, "video_generation_fps": 16, "audio_gen_duration": 10}`), 0o600))
	env := map[string]string{"CONFIG_FILE": path, "CHALLENGE_TOKEN": "from-env-kept-out-of-the-repository-0123"}
	l, err := config.NewLoader(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	c := config.LoadCommon(l, "127.0.0.1:1")
	require.NoError(t, l.Err())
	require.Equal(t, "legacy-secret-kept-out-of-the-repo-0123456789", string(c.JWTSecrets[0]), "legacy key read")
	require.Equal(t, "from-env-kept-out-of-the-repository-0123", c.ChallengeTokens[0], "env wins over config.json")
	require.Equal(t, "production", c.Environment)
	require.Equal(t, 45, l.Int("DEFAULT_CREDIT_EXPIRATION", "default_credit_expiration", 30), "numbers keep their JSON text")
	require.NoError(t, c.Validate())

	// A short secret from config.json is refused in production, named by
	// its legacy key.
	require.NoError(t, os.WriteFile(path, []byte(`{"secret_key": "short-legacy-key", "environment": "production"}`), 0o600))
	l, err = config.NewLoader(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	config.LoadCommon(l, "127.0.0.1:1")
	require.ErrorContains(t, l.Err(), "config.json secret_key: refused in production: shorter than 32 bytes")

	_, err = config.NewLoader(func(k string) (string, bool) { return filepath.Join(t.TempDir(), "missing.json"), k == "CONFIG_FILE" })
	require.ErrorContains(t, err, "CONFIG_FILE")
}

func TestValidateNamesTheBadVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"DATABASE_URL": "mysql://x"}, "DATABASE_URL"},
		{map[string]string{"REDIS_URL": "http://x"}, "REDIS_URL"},
		{map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT"},
		{map[string]string{"JWT_SECRET": "short"}, "JWT_SECRET"},
		{map[string]string{"ENVIRONMENT": "staging"}, "ENVIRONMENT"},
		{map[string]string{"BODY_LIMIT": "10"}, "BODY_LIMIT"},
	}
	for _, tt := range tests {
		c := config.LoadCommon(config.FromMap(tt.env), "127.0.0.1:1")
		require.ErrorContains(t, c.Validate(), tt.want, "%v", tt.env)
	}
	// A short legacy secret may stay as a previous (verify-only) secret.
	c := config.LoadCommon(config.FromMap(map[string]string{"JWT_PREVIOUS_SECRETS": "old"}), "127.0.0.1:1")
	require.NoError(t, c.Validate())
}

func TestParseErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	l := config.FromMap(map[string]string{"A": "x", "B": "soon", "C": "maybe", "D": "yesterday", "E": "10.0.0.1/99"})
	l.Int("A", "", 1)
	require.Equal(t, time.Minute, l.Duration("B", "", time.Minute))
	l.Bool("C", "", false)
	l.Time("D", "")
	l.Prefixes("E", "", nil)
	err := l.Err()
	for _, name := range []string{"A:", "B:", "C:", "D:", "E:"} {
		require.ErrorContains(t, err, name)
	}
	require.Equal(t, 90*time.Second, config.FromMap(map[string]string{"X": "90"}).Duration("X", "", 0), "a bare number is seconds")
}

// TestCheckReportsEveryBadSetting: a parse error and a validation error
// come out of one Check, prefixed "config: ".
func TestCheckReportsEveryBadSetting(t *testing.T) {
	t.Parallel()
	l := config.FromMap(map[string]string{"BODY_LIMIT": "lots", "LOG_FORMAT": "xml"})
	c := config.LoadCommon(l, "127.0.0.1:1")
	err := l.Check(c.Validate())
	require.ErrorContains(t, err, "config: ")
	require.ErrorContains(t, err, "BODY_LIMIT")
	require.ErrorContains(t, err, "LOG_FORMAT")

	ok := config.FromMap(nil)
	require.NoError(t, ok.Check(config.LoadCommon(ok, "127.0.0.1:1").Validate()))
}

func TestOrDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		got  any
		want any
	}{
		{name: "positive int kept", got: config.OrDefault(3, 7), want: 3},
		{name: "zero int defaulted", got: config.OrDefault(0, 7), want: 7},
		{name: "negative int defaulted", got: config.OrDefault(-1, 7), want: 7},
		{name: "positive duration kept", got: config.OrDefault(time.Second, time.Minute), want: time.Second},
		{name: "zero duration defaulted", got: config.OrDefault(time.Duration(0), time.Minute), want: time.Minute},
		{name: "negative duration defaulted", got: config.OrDefault(-time.Second, time.Minute), want: time.Minute},
		{name: "positive float kept", got: config.OrDefault(0.5, 2.0), want: 0.5},
		{name: "zero float defaulted", got: config.OrDefault(0.0, 2.0), want: 2.0},
		{name: "NaN kept, as x <= 0 keeps it", got: math.IsNaN(config.OrDefault(math.NaN(), 2.0)), want: true},
		{name: "int64 size defaulted", got: config.OrDefault(int64(0), int64(1<<20)), want: int64(1 << 20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, tc.got)
		})
	}
}
