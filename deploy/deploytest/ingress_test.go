package deploytest

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// internalPaths are served by the services but must never be routed from
// the internet: the ops console and admin routes (admin token, reached
// through kubectl port-forward) and the metrics (internal listener).
var internalPaths = []string{"/admin", "/admin/hosts", "/admin/login", "/admin/credits/grants", "/metrics"}

// specOperation is one path of api/openapi.yaml and the services that
// serve it (x-service of its operations).
type specOperation struct {
	path     string
	services map[string]bool
}

// publicSpecPaths returns the paths of api/openapi.yaml that the internet
// may reach: every path but those under internalPaths.
func publicSpecPaths(tb testing.TB) []specOperation {
	tb.Helper()
	var spec struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	require.NoError(tb, yaml.Unmarshal(readFile(tb, filepath.Join(repoRoot, "api", "openapi.yaml")), &spec))
	require.NotEmpty(tb, spec.Paths)
	var out []specOperation
	for path, item := range spec.Paths {
		if slices.ContainsFunc(internalPaths, func(p string) bool { return prefixMatches(p, path) }) {
			continue
		}
		op := specOperation{path: path, services: map[string]bool{}}
		for _, v := range item {
			m, ok := v.(map[string]any)
			if !ok {
				continue
			}
			switch s := m["x-service"].(type) {
			case string:
				op.services[s] = true
			case []any:
				for _, x := range s {
					op.services[x.(string)] = true
				}
			}
		}
		out = append(out, op)
	}
	return out
}

// prefixMatches reports whether an Ingress path of pathType Prefix matches
// path: Kubernetes compares whole path elements, so /docs matches /docs
// and /docs/x but not /docsx; "/" matches everything.
func prefixMatches(prefix, path string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
}

// TestIngressRoutesOnlyPublicPaths is issue 13 item 4 in the manifests:
// the production Ingress routed `/` on both hosts, so /metrics and the
// admin routes were on the internet. Now each host routes only prefixes
// that serve a public path of api/openapi.yaml, and every public path its
// service serves (the proxy forwards all of them; api-cpu serves
// accountsvc's). No rule may be `/`, nor reach /metrics or /admin.
func TestIngressRoutesOnlyPublicPaths(t *testing.T) {
	t.Parallel()
	docs := yamlDocs(readFile(t, filepath.Join(repoRoot, k8sDir, "overlays", "production", "ingress.yaml")))
	require.Len(t, docs, 1)
	var ing networkingv1.Ingress
	require.NoError(t, yaml.UnmarshalStrict(docs[0], &ing))
	require.Nil(t, ing.Spec.DefaultBackend, "a default backend routes every path")

	public := publicSpecPaths(t)
	// Which public paths each host must route, by the service behind it.
	serves := map[string]func(specOperation) bool{
		"nounsai-proxy":      func(specOperation) bool { return true },
		"nounsai-accountsvc": func(op specOperation) bool { return op.services["accountsvc"] },
	}
	require.Len(t, ing.Spec.Rules, 2)
	for _, rule := range ing.Spec.Rules {
		require.NotNil(t, rule.HTTP, rule.Host)
		var prefixes []string
		service := ""
		for _, p := range rule.HTTP.Paths {
			require.NotNil(t, p.PathType, "%s %s", rule.Host, p.Path)
			require.Equal(t, networkingv1.PathTypePrefix, *p.PathType, "%s %s", rule.Host, p.Path)
			require.NotNil(t, p.Backend.Service, "%s %s", rule.Host, p.Path)
			if service == "" {
				service = p.Backend.Service.Name
			}
			require.Equal(t, service, p.Backend.Service.Name, "%s sends every path to one service", rule.Host)
			require.Equal(t, "http", p.Backend.Service.Port.Name, "%s %s must use the public port", rule.Host, p.Path)
			require.NotEqual(t, "/", strings.TrimSpace(p.Path), "%s routes every path", rule.Host)
			for _, internal := range internalPaths {
				require.False(t, prefixMatches(p.Path, internal), "%s %s reaches %s", rule.Host, p.Path, internal)
			}
			prefixes = append(prefixes, p.Path)
		}
		wants, ok := serves[service]
		require.True(t, ok, "%s: unexpected backend %q", rule.Host, service)
		for _, prefix := range prefixes {
			require.True(t, slices.ContainsFunc(public, func(op specOperation) bool {
				return wants(op) && prefixMatches(prefix, op.path)
			}), "%s %s serves no public path of api/openapi.yaml", rule.Host, prefix)
		}
		for _, op := range public {
			if !wants(op) {
				continue
			}
			require.True(t, slices.ContainsFunc(prefixes, func(prefix string) bool { return prefixMatches(prefix, op.path) }),
				"%s does not route %s (api/openapi.yaml): add its prefix to the Ingress", rule.Host, op.path)
		}
	}
}
