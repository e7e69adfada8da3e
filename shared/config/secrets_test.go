package config_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/config"
)

// strong returns a production-grade secret distinct per name.
func strong(name string) string { return "k8Zq2vN0xR4tY7wP1mB5cD9fG3hJ6lS_" + name }

// production is a complete production environment with strong secrets.
func production() map[string]string {
	return map[string]string{
		"ENVIRONMENT":               "production",
		"JWT_SECRET":                strong("jwt"),
		"JWT_PREVIOUS_SECRETS":      strong("old1") + "," + strong("old2"),
		"CHALLENGE_TOKEN":           strong("challenge"),
		"CHALLENGE_PREVIOUS_TOKENS": strong("oldchallenge"),
		"ADMIN_TOKEN":               strong("admin"),
		"DATABASE_URL":              "postgres://nounsai:" + strong("db") + "@db.internal:5432/nounsai",
	}
}

// load reads the shared settings and every credential a service reads,
// and returns the loader's error.
func load(env map[string]string) error {
	l := config.FromMap(env)
	config.LoadCommon(l, "127.0.0.1:1")
	l.Credential("SENDGRID_API_KEY", "", "")
	l.Secret("LINK_KEY_SECRET", "", "")
	return l.Err()
}

func TestProductionAcceptsStrongSecrets(t *testing.T) {
	t.Parallel()
	require.NoError(t, load(production()))
	env := production()
	env["SENDGRID_API_KEY"] = "SG.short-but-issued" // a vendor key's length is not ours
	delete(env, "ADMIN_TOKEN")                      // empty: the admin routes are off
	require.NoError(t, load(env))
}

// TestProductionRefusesWeakSecrets: each weak value is refused, and one
// error names every offending variable, not just the first.
func TestProductionRefusesWeakSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  map[string]string
		want []string
	}{
		{"unset secrets fall back to the development ones", map[string]string{"JWT_SECRET": "", "CHALLENGE_TOKEN": ""},
			[]string{"JWT_SECRET (unset; the default)", "CHALLENGE_TOKEN (unset; the default)"}},
		{"the deploy placeholders", map[string]string{
			"JWT_SECRET": "CHANGE-ME-at-least-32-random-bytes", "CHALLENGE_TOKEN": "CHANGE-ME", "ADMIN_TOKEN": "CHANGE-ME",
			"SENDGRID_API_KEY": "CHANGE-ME", "DATABASE_URL": "postgres://nounsai:CHANGE-ME@db.internal:5432/nounsai",
		}, []string{"JWT_SECRET", "CHALLENGE_TOKEN", "ADMIN_TOKEN", "SENDGRID_API_KEY", "DATABASE_URL (password)"}},
		{"compose and make run defaults", map[string]string{
			"JWT_SECRET": config.DevJWTSecret, "CHALLENGE_TOKEN": config.DevChallengeToken, "ADMIN_TOKEN": "dev-admin-token",
		}, []string{"JWT_SECRET", "CHALLENGE_TOKEN", "ADMIN_TOKEN"}},
		{"short secrets", map[string]string{"ADMIN_TOKEN": "x", "LINK_KEY_SECRET": "0123456789abcdef0123456789abcde"},
			[]string{"ADMIN_TOKEN", "LINK_KEY_SECRET"}},
		{"a known secret among the previous ones", map[string]string{
			"JWT_PREVIOUS_SECRETS": strong("old") + "," + config.DevJWTSecret, "CHALLENGE_PREVIOUS_TOKENS": "legacy-token",
		}, []string{"JWT_PREVIOUS_SECRETS (entry 2)", "CHALLENGE_PREVIOUS_TOKENS"}},
		{"a long test value", map[string]string{"JWT_SECRET": "test-jwt-secret-0123456789abcdef"}, []string{"JWT_SECRET"}},
		{"a placeholder in any case", map[string]string{"JWT_SECRET": "please-change-me-0123456789abcdefghijkl"}, []string{"JWT_SECRET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := production()
			for k, v := range tt.set {
				env[k] = v
			}
			err := load(env)
			require.Error(t, err)
			for _, name := range tt.want {
				require.ErrorContains(t, err, name+": refused in production")
			}
			require.Equal(t, len(tt.want), strings.Count(err.Error(), "refused in production"), "%v", err)
			for _, v := range tt.set {
				if v != "" && v != "CHANGE-ME" && !strings.HasPrefix(v, "postgres:") && !strings.Contains(v, ",") {
					require.NotContains(t, err.Error(), v, "the error must not repeat a secret")
				}
			}
		})
	}
}

func TestLocalAllowsTheDevelopmentSecrets(t *testing.T) {
	t.Parallel()
	require.NoError(t, load(map[string]string{"ADMIN_TOKEN": "dev-admin-token", "CHALLENGE_PREVIOUS_TOKENS": "x"}))
}

func TestShippedSecretsAreRefused(t *testing.T) {
	t.Parallel()
	for _, s := range config.ShippedSecrets() {
		require.NotEmpty(t, config.WeakSecret(s), s)
	}
	require.Empty(t, config.WeakSecret(strong("x")))
}
