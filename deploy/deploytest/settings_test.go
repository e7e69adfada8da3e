package deploytest

import (
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// settingCall matches a config.Loader getter call naming an environment
// variable, e.g. l.Duration("SHUTDOWN_TIMEOUT", "", 8*time.Second).
var settingCall = regexp.MustCompile(`\.(?:String|Int|Int64|Bool|Duration|Float|List|Prefixes|Time|Secret|Secrets|Credential|URL)\(\s*"([A-Z][A-Z0-9_]*)"`)

// priceVariable matches a PRICE_* variable name in the price table.
var priceVariable = regexp.MustCompile(`"(PRICE_[A-Z0-9_]+)"`)

// notSettings are variables the deploy files may set that no getter reads:
// the loader's own CONFIG_FILE, the NVIDIA runtime's, and the pod IP that
// PUBLIC_URL is built from on Kubernetes.
var notSettings = map[string]bool{
	"CONFIG_FILE":                true,
	"CUDA_VISIBLE_DEVICES":       true,
	"NVIDIA_VISIBLE_DEVICES":     true,
	"NVIDIA_DRIVER_CAPABILITIES": true,
	"POD_IP":                     true,
}

// settings returns every environment variable a binary reads through
// config.Loader, from the current sources.
func settings(tb testing.TB) map[string]bool {
	tb.Helper()
	out := map[string]bool{}
	src := goSources(tb)
	for _, m := range settingCall.FindAllStringSubmatch(src, -1) {
		out[m[1]] = true
	}
	// The credits price table names its variables in a table, not in
	// getter calls (shared/credits/pricing.go).
	for _, m := range priceVariable.FindAllStringSubmatch(src, -1) {
		out[m[1]] = true
	}
	require.NotEmpty(tb, out, "no config.Loader getter found in the sources")
	return out
}

// envAssignment matches NAME=value and a commented "# NAME=value" example
// in an EnvironmentFile.
var envAssignment = regexp.MustCompile(`(?m)^#?[ \t]*([A-Z][A-Z0-9_]*)=`)

// unitEnvironment matches Environment=NAME=value in a unit file.
var unitEnvironment = regexp.MustCompile(`(?m)^Environment=([A-Z][A-Z0-9_]*)=`)

// TestEnvExamplesDocumentEverySetting checks that each setting the binaries
// read appears, documented, in deploy/systemd/env, and that the examples
// name no variable that nothing reads (a typo there would be silently
// ignored in production).
func TestEnvExamplesDocumentEverySetting(t *testing.T) {
	t.Parallel()
	known := settings(t)
	mentioned := map[string]bool{}
	var unknown []string
	for _, f := range filesUnder(t, "deploy/systemd/env", ".env") {
		for _, m := range envAssignment.FindAllStringSubmatch(string(readFile(t, f)), -1) {
			mentioned[m[1]] = true
			if !known[m[1]] && !notSettings[m[1]] {
				unknown = append(unknown, rel(f)+": "+m[1])
			}
		}
	}
	for _, f := range filesUnder(t, "deploy/systemd", ".service") {
		for _, m := range unitEnvironment.FindAllStringSubmatch(string(readFile(t, f)), -1) {
			if !known[m[1]] && !notSettings[m[1]] {
				unknown = append(unknown, rel(f)+": "+m[1])
			}
		}
	}
	sort.Strings(unknown)
	require.Empty(t, unknown, "deploy/systemd sets variables that no service reads")
	var missing []string
	for name := range known {
		if !mentioned[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "settings read by the services but not documented in deploy/systemd/env/*.env")
}

// TestOperationsDocNamesEverySetting checks that the runbook's settings
// table keeps up with the code.
func TestOperationsDocNamesEverySetting(t *testing.T) {
	t.Parallel()
	doc := string(readFile(t, filepath.Join(repoRoot, "docs", "operations.md")))
	var missing []string
	for name := range settings(t) {
		if !strings.Contains(doc, "`"+name+"`") {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "settings not named (in backquotes) in docs/operations.md")
}

// TestComposeSettingsAreReal checks the environment of the compose services
// built from this repository.
func TestComposeSettingsAreReal(t *testing.T) {
	t.Parallel()
	known := settings(t)
	var compose struct {
		Services map[string]struct {
			Build       *struct{ Context, Dockerfile string } `json:"build"`
			Environment map[string]any                        `json:"environment"`
		} `json:"services"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, filepath.Join(deployDir, "compose.yaml")), &compose))
	var unknown []string
	for name, svc := range compose.Services {
		if svc.Build == nil {
			continue
		}
		require.NotEmpty(t, svc.Environment, "compose service %s has no environment", name)
		for k := range svc.Environment {
			if !known[k] && !notSettings[k] {
				unknown = append(unknown, name+": "+k)
			}
		}
	}
	sort.Strings(unknown)
	require.Empty(t, unknown, "compose.yaml sets variables that no service reads")
}

// readmeTableVariable matches a backquoted variable in the first column of
// the README's configuration table.
var readmeTableVariable = regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")

// TestReadmeConfigurationTableIsTrue checks that every variable and legacy
// key the README's configuration table names is one the code reads, so the
// table cannot drift from the code.
func TestReadmeConfigurationTableIsTrue(t *testing.T) {
	t.Parallel()
	known := settings(t)
	src := goSources(t)
	readme := string(readFile(t, filepath.Join(repoRoot, "README.md")))
	start := strings.Index(readme, "| variable | legacy `config.json` key |")
	require.GreaterOrEqual(t, start, 0, "README has no configuration table")
	var unknown []string
	rows := 0
	for _, line := range strings.Split(readme[start:], "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		rows++
		cols := strings.Split(line, "|")
		for _, m := range readmeTableVariable.FindAllStringSubmatch(cols[1], -1) {
			if !known[m[1]] && !notSettings[m[1]] {
				unknown = append(unknown, m[1])
			}
		}
		for _, m := range regexp.MustCompile("`([a-z][a-z0-9_]+)`").FindAllStringSubmatch(cols[2], -1) {
			if !strings.Contains(src, `"`+m[1]+`"`) {
				unknown = append(unknown, "legacy key "+m[1])
			}
		}
	}
	require.Greater(t, rows, 20, "the README configuration table looks truncated")
	require.Empty(t, unknown, "README names settings the code does not read")
}
