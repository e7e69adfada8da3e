package deploytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// k8sDir holds the kustomize base, overlays and the example Secret.
const k8sDir = "deploy/k8s"

// kustomization is the part of a kustomization.yaml the tests read.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
	Resources []string
	Patches   []struct {
		Path   string `json:"path"`
		Target *struct {
			Group, Version, Kind, Name string
		} `json:"target"`
	} `json:"patches"`
	Images []struct {
		Name, NewName, NewTag string
	} `json:"images"`
}

// newObject returns an empty typed object for apiVersion/kind, or nil for
// a kind the manifests are not expected to hold.
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/Service":
		return &corev1.Service{}
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}
	case "batch/v1/Job":
		return &batchv1.Job{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	}
	return nil
}

// decodeStrict decodes one manifest document into its API type, refusing
// unknown and duplicate fields, and returns it.
func decodeStrict(tb testing.TB, where string, doc []byte) any {
	tb.Helper()
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	require.NoError(tb, yaml.Unmarshal(doc, &meta), where)
	obj := newObject(meta.APIVersion, meta.Kind)
	require.NotNil(tb, obj, "%s: unexpected apiVersion %q kind %q", where, meta.APIVersion, meta.Kind)
	require.NoError(tb, yaml.UnmarshalStrict(doc, obj), "%s: %s %s", where, meta.APIVersion, meta.Kind)
	return obj
}

// TestKubernetesManifestsDecodeStrictly decodes every manifest under
// deploy/k8s into the Kubernetes API types, following each
// kustomization's resources and patches so that no file goes unchecked.
func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	t.Parallel()
	checked := map[string]bool{}
	for _, kf := range filesUnder(t, k8sDir, "kustomization.yaml") {
		dir := filepath.Dir(kf)
		var k kustomization
		require.NoError(t, yaml.UnmarshalStrict(readFile(t, kf), &k), rel(kf))
		require.Equal(t, "Kustomization", k.Kind, rel(kf))
		require.Equal(t, "nounsai", k.Namespace, "%s namespace", rel(kf))
		checked[kf] = true
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			st, err := os.Stat(p)
			require.NoError(t, err, "%s lists %s", rel(kf), r)
			if st.IsDir() {
				_, err := os.Stat(filepath.Join(p, "kustomization.yaml"))
				require.NoError(t, err, "%s: %s is not a kustomization", rel(kf), r)
				continue
			}
			for i, d := range yamlDocs(readFile(t, p)) {
				decodeStrict(t, fmt.Sprintf("%s#%d", rel(p), i+1), d)
			}
			checked[p] = true
		}
		for _, pt := range k.Patches {
			p := filepath.Join(dir, pt.Path)
			b := readFile(t, p)
			checked[p] = true
			if pt.Target != nil {
				// A JSON 6902 patch: a list of operations.
				var ops []struct {
					Op    string `json:"op"`
					Path  string `json:"path"`
					Value any    `json:"value"`
					From  string `json:"from"`
				}
				require.NoError(t, yaml.UnmarshalStrict(b, &ops), rel(p))
				require.NotEmpty(t, ops, rel(p))
				for _, op := range ops {
					require.Contains(t, []string{"add", "remove", "replace", "move", "copy", "test"}, op.Op, rel(p))
					require.True(t, strings.HasPrefix(op.Path, "/"), "%s: path %q", rel(p), op.Path)
				}
				continue
			}
			// A strategic merge patch: partial objects of known kinds.
			for i, d := range yamlDocs(b) {
				decodeStrict(t, fmt.Sprintf("%s#%d", rel(p), i+1), d)
			}
		}
	}
	// Files outside every kustomization (the example Secret).
	for _, f := range filesUnder(t, k8sDir, ".yaml") {
		if checked[f] {
			continue
		}
		for i, d := range yamlDocs(readFile(t, f)) {
			decodeStrict(t, fmt.Sprintf("%s#%d", rel(f), i+1), d)
		}
	}
}

// baseObjects decodes every resource of the base kustomization.
func baseObjects(tb testing.TB) []any {
	tb.Helper()
	base := filepath.Join(repoRoot, k8sDir, "base")
	var k kustomization
	require.NoError(tb, yaml.Unmarshal(readFile(tb, filepath.Join(base, "kustomization.yaml")), &k))
	var out []any
	for _, r := range k.Resources {
		p := filepath.Join(base, r)
		for i, d := range yamlDocs(readFile(tb, p)) {
			out = append(out, decodeStrict(tb, fmt.Sprintf("%s#%d", rel(p), i+1), d))
		}
	}
	return out
}

func objectsOf[T any](objs []any) map[string]*T {
	out := map[string]*T{}
	for _, o := range objs {
		if v, ok := o.(*T); ok {
			out[nameOf(o)] = v
		}
	}
	return out
}

func nameOf(o any) string {
	switch v := o.(type) {
	case *appsv1.Deployment:
		return v.Name
	case *appsv1.DaemonSet:
		return v.Name
	case *corev1.Service:
		return v.Name
	case *corev1.ConfigMap:
		return v.Name
	case *corev1.ServiceAccount:
		return v.Name
	case *corev1.Namespace:
		return v.Name
	case *policyv1.PodDisruptionBudget:
		return v.Name
	case *autoscalingv2.HorizontalPodAutoscaler:
		return v.Name
	case *batchv1.Job:
		return v.Name
	}
	return ""
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func envValue(c corev1.Container, name string) (corev1.EnvVar, bool) {
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 {
		return corev1.EnvVar{}, false
	}
	return c.Env[i], true
}

// TestKubernetesBaseSemantics checks what the API types cannot: selectors
// select, probes probe /health, every container has requests, the pods are
// hardened, gpusvc registers and drains itself, and the settings named are
// settings the binaries read.
func TestKubernetesBaseSemantics(t *testing.T) {
	t.Parallel()
	objs := baseObjects(t)
	deployments := objectsOf[appsv1.Deployment](objs)
	services := objectsOf[corev1.Service](objs)
	pdbs := objectsOf[policyv1.PodDisruptionBudget](objs)
	hpas := objectsOf[autoscalingv2.HorizontalPodAutoscaler](objs)
	jobs := objectsOf[batchv1.Job](objs)
	configMaps := objectsOf[corev1.ConfigMap](objs)
	accounts := objectsOf[corev1.ServiceAccount](objs)
	known := settings(t)

	for _, name := range []string{"nounsai-proxy", "nounsai-accountsvc", "nounsai-gpusvc"} {
		require.Contains(t, deployments, name)
		require.Contains(t, services, name)
		require.Contains(t, pdbs, name)
	}
	require.Contains(t, jobs, "nounsai-migrate")
	require.Equal(t, []string{"migrate"}, jobs["nounsai-migrate"].Spec.Template.Spec.Containers[0].Args)
	require.Contains(t, hpas, "nounsai-accountsvc")
	hpa := hpas["nounsai-accountsvc"]
	require.Equal(t, "Deployment", hpa.Spec.ScaleTargetRef.Kind)
	require.Contains(t, deployments, hpa.Spec.ScaleTargetRef.Name)
	require.Nil(t, deployments[hpa.Spec.ScaleTargetRef.Name].Spec.Replicas, "the HPA owns the replica count")

	cm := configMaps["nounsai-config"]
	require.NotNil(t, cm)
	for k := range cm.Data {
		require.True(t, known[k], "ConfigMap nounsai-config sets %s, which no service reads", k)
	}
	var secret corev1.Secret
	require.NoError(t, yaml.UnmarshalStrict(readFile(t, filepath.Join(repoRoot, k8sDir, "secrets", "secret.example.yaml")), &secret))
	require.Equal(t, "nounsai-secrets", secret.Name)
	for _, k := range []string{"DATABASE_URL", "REDIS_URL", "JWT_SECRET", "JWT_PREVIOUS_SECRETS", "CHALLENGE_TOKEN", "CHALLENGE_PREVIOUS_TOKENS", "ADMIN_TOKEN"} {
		require.Contains(t, secret.StringData, k, "secret.example.yaml")
	}
	for k := range secret.StringData {
		require.True(t, known[k], "secret.example.yaml sets %s, which no service reads", k)
		require.NotContains(t, cm.Data, k, "%s is in both the ConfigMap and the Secret", k)
	}

	pods := map[string]corev1.PodTemplateSpec{"job/nounsai-migrate": jobs["nounsai-migrate"].Spec.Template}
	for name, d := range deployments {
		require.NotNil(t, d.Spec.Selector, name)
		require.True(t, selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels), "%s selector must match its pods", name)
		require.True(t, selects(services[name].Spec.Selector, d.Spec.Template.Labels), "Service %s must select its pods", name)
		for _, sp := range services[name].Spec.Ports {
			// The metrics port stays off every Service: Prometheus scrapes
			// the pods, and nothing routable reaches the metrics.
			require.Equal(t, "http", sp.TargetPort.String(), "Service %s port %s", name, sp.Name)
		}
		require.NotNil(t, pdbs[name].Spec.Selector, name)
		require.True(t, selects(pdbs[name].Spec.Selector.MatchLabels, d.Spec.Template.Labels), "PDB %s must select its pods", name)
		pods["deployment/"+name] = d.Spec.Template
		c := d.Spec.Template.Spec.Containers[0]
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			require.NotNil(t, p, "%s probes", name)
			require.NotNil(t, p.HTTPGet, "%s probes", name)
			require.Equal(t, "/health", p.HTTPGet.Path, "%s probes", name)
		}
		require.NotEmpty(t, c.Ports, name)
		// Prometheus scrapes the port named metrics (the internal
		// METRICS_ADDR listener of the proxy and accountsvc), else the
		// only port (gpusvc, on the private network).
		scrape := c.Ports[0]
		for _, p := range c.Ports {
			if p.Name == "metrics" {
				scrape = p
				addr, ok := envValue(c, "METRICS_ADDR")
				require.True(t, ok, "%s has a metrics port, so sets METRICS_ADDR", name)
				require.Equal(t, fmt.Sprintf("0.0.0.0:%d", p.ContainerPort), addr.Value, name)
			}
		}
		require.Equal(t, fmt.Sprintf("%d", scrape.ContainerPort), d.Spec.Template.Annotations["prometheus.io/port"], "%s scrape port", name)
		addr, ok := envValue(c, "HTTP_ADDR")
		require.True(t, ok, "%s sets HTTP_ADDR", name)
		require.Equal(t, fmt.Sprintf("0.0.0.0:%d", c.Ports[0].ContainerPort), addr.Value, name)
	}
	for name, pod := range pods {
		spec := pod.Spec
		require.Contains(t, accounts, spec.ServiceAccountName, "%s service account", name)
		require.NotNil(t, spec.SecurityContext, name)
		require.NotNil(t, spec.SecurityContext.RunAsNonRoot, name)
		require.True(t, *spec.SecurityContext.RunAsNonRoot, name)
		for _, c := range spec.Containers {
			require.Contains(t, []string{"nounsai/proxy", "nounsai/accountsvc", "nounsai/gpusvc"}, c.Image, "%s image", name)
			_, err := os.Stat(filepath.Join(deployDir, "docker", strings.TrimPrefix(c.Image, "nounsai/")+".Dockerfile"))
			require.NoError(t, err, "%s: no Dockerfile for %s", name, c.Image)
			require.False(t, c.Resources.Requests.Cpu().IsZero(), "%s cpu request", name)
			require.False(t, c.Resources.Requests.Memory().IsZero(), "%s memory request", name)
			require.NotNil(t, c.SecurityContext, name)
			require.False(t, *c.SecurityContext.AllowPrivilegeEscalation, name)
			require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, name)
			require.Len(t, c.EnvFrom, 2, "%s reads the ConfigMap and the Secret", name)
			require.Equal(t, "nounsai-config", c.EnvFrom[0].ConfigMapRef.Name, name)
			require.Equal(t, "nounsai-secrets", c.EnvFrom[1].SecretRef.Name, name)
			for _, e := range c.Env {
				require.True(t, known[e.Name] || notSettings[e.Name], "%s sets %s, which no service reads", name, e.Name)
			}
		}
	}

	gpu := deployments["nounsai-gpusvc"].Spec.Template.Spec
	require.NotEmpty(t, gpu.NodeSelector, "gpusvc runs on GPU nodes")
	c := gpu.Containers[0]
	limit := c.Resources.Limits["nvidia.com/gpu"]
	require.Equal(t, int64(1), limit.Value(), "gpusvc: one GPU per pod")
	podIP, ok := envValue(c, "POD_IP")
	require.True(t, ok)
	require.Equal(t, "status.podIP", podIP.ValueFrom.FieldRef.FieldPath)
	publicURL, ok := envValue(c, "PUBLIC_URL")
	require.True(t, ok)
	require.Equal(t, "http://$(POD_IP):8091", publicURL.Value)
	require.Less(t, slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_IP" }),
		slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "PUBLIC_URL" }),
		"POD_IP must come before PUBLIC_URL for $(POD_IP) to expand")
	register, ok := envValue(c, "REGISTER_HOST")
	require.True(t, ok)
	require.Equal(t, "true", register.Value)
	require.NotNil(t, c.Lifecycle)
	require.NotNil(t, c.Lifecycle.PreStop)
	require.NotNil(t, gpu.TerminationGracePeriodSeconds)
	require.GreaterOrEqual(t, *gpu.TerminationGracePeriodSeconds, int64(300))
	shutdown, ok := envValue(c, "SHUTDOWN_TIMEOUT")
	require.True(t, ok)
	d, err := time.ParseDuration(shutdown.Value)
	require.NoError(t, err)
	require.Less(t, d+time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second,
		time.Duration(*gpu.TerminationGracePeriodSeconds)*time.Second, "gpusvc drain must end before the kill")
}

// TestKustomizeOverlaysRender renders each overlay with `kubectl
// kustomize` (when kubectl is installed) and decodes the result strictly.
func TestKustomizeOverlaysRender(t *testing.T) {
	t.Parallel()
	kubectl := lookPath("kubectl")
	if kubectl == "" {
		t.Skip("kubectl is not installed; the overlays' files are still decoded by TestKubernetesManifestsDecodeStrictly")
	}
	overlays, err := filepath.Glob(filepath.Join(repoRoot, k8sDir, "overlays", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, overlays)
	for _, o := range overlays {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, kubectl, "kustomize", o)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		require.NoError(t, err, "kubectl kustomize %s: %s", rel(o), stderr.String())
		kinds := map[string]int{}
		for i, d := range yamlDocs(stdout.Bytes()) {
			obj := decodeStrict(t, fmt.Sprintf("%s (rendered)#%d", rel(o), i+1), d)
			var meta struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			require.NoError(t, yaml.Unmarshal(d, &meta))
			kinds[meta.Kind]++
			if meta.Kind != "Namespace" {
				require.Equal(t, "nounsai", meta.Metadata.Namespace, "%s: %s %s", rel(o), meta.Kind, nameOf(obj))
			}
		}
		require.Equal(t, 3, kinds["Deployment"], rel(o))
		require.Equal(t, 1, kinds["Job"], rel(o))
		require.Equal(t, 1, kinds["HorizontalPodAutoscaler"], rel(o))
	}
}
