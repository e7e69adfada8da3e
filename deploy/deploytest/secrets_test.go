package deploytest

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/config"
)

// secretForms match the ways a value is assigned to a variable: NAME=value
// (shell, env files, Dockerfiles; also commented out, as env files show
// defaults), NAME: value (a YAML key) and ${NAME:-value} (a default). A
// value stops at a space, a quote or a reference to another variable.
var secretForms = []*regexp.Regexp{
	regexp.MustCompile(`(?:^|[\s"'#])([A-Za-z][A-Za-z0-9_]*)=([^\s"'$\\]*)`),
	regexp.MustCompile(`(?m)^[ \t]*(?:- )?([A-Za-z][A-Za-z0-9_]*):[ \t]+"?([^\s"'$\\#]*)`),
	regexp.MustCompile(`\$\{([A-Za-z][A-Za-z0-9_]*):?-([^}$]*)\}`),
}

// urlPassword matches the password of scheme://user:password@host.
var urlPassword = regexp.MustCompile(`[a-z]+://[A-Za-z0-9_.-]*:([^@/\s$]+)@`)

// secretWords mark a variable that holds a secret: one of the words of its
// name (split at "_").
var secretWords = []string{"secret", "secrets", "token", "tokens", "password", "key"}

// notSecrets are variables whose name has a secret word but whose value is
// not a secret.
var notSecrets = []string{"TOKEN_TTL", "LEGACY_TOKEN_CUTOFF", "key", "KEY"}

func isSecretName(name string) bool {
	if slices.Contains(notSecrets, name) {
		return false
	}
	for _, w := range strings.Split(strings.ToLower(name), "_") {
		if slices.Contains(secretWords, w) {
			return true
		}
	}
	return false
}

// shippedSecretValues returns "file: NAME=value" for every secret value
// assigned in text: secret-named variables, defaults and URL passwords.
// References to other variables ($X, ${X}, $(cmd)) are not values.
func shippedSecretValues(file, text string) map[string]string {
	out := map[string]string{}
	for _, re := range secretForms {
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			name, value := m[1], strings.Trim(m[2], `"'`)
			if isSecretName(name) && value != "" {
				out[fmt.Sprintf("%s: %s=%s", file, name, value)] = value
			}
		}
	}
	for _, m := range urlPassword.FindAllStringSubmatch(text, -1) {
		out[fmt.Sprintf("%s: URL password %s", file, m[1])] = m[1]
	}
	return out
}

// TestShippedSecretsAreListed: every secret value written in deploy/
// (examples, the compose file, manifests), scripts/ (make run) and bench/
// is in config.ShippedSecrets, which production refuses. A new example
// value that is not listed would be accepted in production: list it.
func TestShippedSecretsAreListed(t *testing.T) {
	t.Parallel()
	found := map[string]string{}
	for _, dir := range []string{"deploy", "scripts", "bench"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "deploytest" {
				return filepath.SkipDir // these tests and their sample texts
			}
			if d.IsDir() || strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".md") {
				return nil
			}
			for k, v := range shippedSecretValues(path, string(readFile(t, path))) {
				found[k] = v
			}
			return nil
		})
		require.NoError(t, err)
	}
	// The scan must see the assignments it exists for.
	for _, want := range []string{"JWT_SECRET=CHANGE-ME-at-least-32-random-bytes", "ADMIN_TOKEN=dev-admin-token",
		"dev_jwt_secret=nounsai-dev-jwt-secret-do-not-use-in-production", "URL password CHANGE-ME"} {
		require.True(t, slices.ContainsFunc(keys(found), func(k string) bool { return strings.HasSuffix(k, want) }),
			"the scan missed %q; found %v", want, keys(found))
	}
	shipped := config.ShippedSecrets()
	var missing []string
	for k, v := range found {
		if !slices.Contains(shipped, v) {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	require.Empty(t, missing, "secret values shipped in the repository but missing from config.ShippedSecrets")
}

func TestSecretScanFindsEveryForm(t *testing.T) {
	t.Parallel()
	text := "JWT_SECRET=a1\n#ADMIN_TOKEN=a2\n  CHALLENGE_TOKEN: a3\nX: ${STORAGE_ACCESS_KEY:-a4}\n" +
		"export JWT_SECRET=${JWT_SECRET:-$dev}\nDATABASE_URL=postgres://u:a5@h/db\nTOKEN_TTL=720h\nREDIS_PREFIX=x\n"
	got := shippedSecretValues("f", text)
	var values []string
	for _, v := range got {
		values = append(values, v)
	}
	slices.Sort(values)
	require.Equal(t, []string{"a1", "a2", "a3", "a4", "a5"}, values, "%v", got)
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
