// Package configtest reads the example configurations shipped in deploy/
// (systemd environment files, the Kubernetes ConfigMap and Secrets, the
// compose file) as plain environments, so that each service's tests can
// load its configuration from them exactly as the binary would. Tests only.
package configtest

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// Example is one deploy example as the environment a service would see.
type Example struct {
	// Name says which files it was read from.
	Name string
	// Env maps each variable to its value.
	Env map[string]string
}

// RepoRoot returns the repository root: the nearest directory above the
// working directory that holds go.work.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	require.NoError(tb, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(tb, dir, parent, "no go.work above the working directory")
		dir = parent
	}
}

// DeployExamples returns every example environment deploy/ ships for
// service ("proxy", "accountsvc" or "gpusvc"): the systemd files (common.env
// then the service's own), the production Kubernetes ConfigMap with the
// example Secret, the dev overlay, and the compose file with its defaults.
// Values are taken as they are written; ${VAR:-default} in the compose file
// becomes its default.
func DeployExamples(tb testing.TB, service string) []Example {
	tb.Helper()
	root := filepath.Join(RepoRoot(tb), "deploy")
	envFiles := []string{"common.env", service + ".env"}
	if service == "gpusvc" {
		envFiles = append(envFiles, "gpusvc@0.env")
	}
	systemd := map[string]string{}
	for _, f := range envFiles {
		maps.Copy(systemd, envFile(tb, filepath.Join(root, "systemd", "env", f)))
	}
	k8s := k8sData(tb, filepath.Join(root, "k8s", "base", "configmap.yaml"))
	maps.Copy(k8s, k8sData(tb, filepath.Join(root, "k8s", "secrets", "secret.example.yaml")))
	dev := k8sData(tb, filepath.Join(root, "k8s", "base", "configmap.yaml"))
	maps.Copy(dev, k8sData(tb, filepath.Join(root, "k8s", "overlays", "dev", "config.yaml")))
	maps.Copy(dev, k8sData(tb, filepath.Join(root, "k8s", "overlays", "dev", "secret.yaml")))
	return []Example{
		{"deploy/systemd/env/" + strings.Join(envFiles, " + "), systemd},
		{"deploy/k8s/base/configmap.yaml + deploy/k8s/secrets/secret.example.yaml", k8s},
		{"deploy/k8s/overlays/dev (config.yaml + secret.yaml)", dev},
		{"deploy/compose.yaml (" + service + ")", compose(tb, filepath.Join(root, "compose.yaml"), service)},
	}
}

// envFile reads the KEY=value lines of a systemd EnvironmentFile; comments
// and blank lines are skipped.
func envFile(tb testing.TB, path string) map[string]string {
	tb.Helper()
	b, err := os.ReadFile(path)
	require.NoError(tb, err)
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(tb, ok, "%s: not KEY=value: %q", path, line)
		out[k] = strings.Trim(v, `"`)
	}
	return out
}

// k8sData reads a ConfigMap's data or a Secret's stringData.
func k8sData(tb testing.TB, path string) map[string]string {
	tb.Helper()
	b, err := os.ReadFile(path)
	require.NoError(tb, err)
	var obj struct {
		Data       map[string]string `json:"data"`
		StringData map[string]string `json:"stringData"`
	}
	require.NoError(tb, yaml.Unmarshal(b, &obj), path)
	out := map[string]string{}
	maps.Copy(out, obj.Data)
	maps.Copy(out, obj.StringData)
	return out
}

// composeVar matches ${NAME}, ${NAME:-default} and ${NAME-default}.
var composeVar = regexp.MustCompile(`\$\{[A-Z_][A-Z0-9_]*(?::?-([^}]*))?\}`)

// compose reads the environment the compose file gives service: the shared
// x-common-env block, then the service's own environment, with every
// variable reference replaced by its default.
func compose(tb testing.TB, path, service string) map[string]string {
	tb.Helper()
	b, err := os.ReadFile(path)
	require.NoError(tb, err)
	var doc struct {
		Common   map[string]any `json:"x-common-env"`
		Services map[string]struct {
			Environment map[string]any `json:"environment"`
		} `json:"services"`
	}
	require.NoError(tb, yaml.Unmarshal(b, &doc), path)
	require.NotEmpty(tb, doc.Common, "%s: no x-common-env", path)
	out := map[string]string{}
	add := func(m map[string]any) {
		for k, v := range m {
			if s, ok := v.(string); ok && k != "<<" {
				out[k] = composeVar.ReplaceAllString(s, "$1")
			}
		}
	}
	add(doc.Common)
	if s, ok := doc.Services[service]; ok {
		add(s.Environment)
	}
	return out
}

// RequireRefused checks err, the error a service's configuration loading
// returned for ex in production: it must name, as refused in production,
// every variable of secrets that ex sets to a non-empty value (for a URL
// variable: its password, when it has one). The examples in deploy/ hold
// no value production would accept, so every secret they set is named.
func RequireRefused(tb testing.TB, err error, ex Example, secrets []string) {
	tb.Helper()
	require.Error(tb, err, "%s: production accepted the example as is", ex.Name)
	named := 0
	for _, name := range secrets {
		v := ex.Env[name]
		if v == "" {
			continue
		}
		if strings.HasSuffix(name, "_URL") {
			if !regexp.MustCompile(`^[a-z]+://[^/@]*:[^/@]*@`).MatchString(v) {
				continue
			}
			name += " (password)"
		}
		require.ErrorContains(tb, err, name+": refused in production", "%s", ex.Name)
		named++
	}
	require.NotZero(tb, named, "%s sets none of %v", ex.Name, secrets)
}
