package deploytest

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// metricName matches a metric name given to client_golang (an Opts Name
// field or the first argument of NewDesc) or to web.NewDurationHistogram
// (its first string argument).
var metricName = regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*|NewDurationHistogram\([^"]*)"([a-z_:][a-z0-9_:]*)"`)

// exportedMetrics returns the metric names the code registers, read from
// the current sources.
func exportedMetrics(tb testing.TB) map[string]bool {
	tb.Helper()
	out := map[string]bool{}
	for _, m := range metricName.FindAllStringSubmatch(goSources(tb), -1) {
		out[m[1]] = true
	}
	require.Contains(tb, out, "http_requests_total", "the shared HTTP metrics")
	return out
}

var (
	promString    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promRange     = regexp.MustCompile(`\[[^\]]*\]`)
	promWord      = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promVariables = regexp.MustCompile(`\$\{?\w+\}?`)
)

// promFunctions are the PromQL functions, aggregations and keywords the
// dashboards may use; every other identifier is a metric name.
var promFunctions = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "topk": true, "bottomk": true,
	"rate": true, "irate": true, "increase": true, "delta": true, "histogram_quantile": true,
	"clamp_min": true, "clamp_max": true, "abs": true, "time": true, "vector": true, "scalar": true,
	"sum_over_time": true, "avg_over_time": true, "max_over_time": true, "min_over_time": true,
	"label_replace": true, "and": true, "or": true, "unless": true, "offset": true, "bool": true,
	"changes": true, "resets": true, "absent": true, "sort_desc": true, "sort": true, "le": true,
}

// metricsIn returns the metric names a PromQL expression reads.
func metricsIn(expr string) []string {
	e := promString.ReplaceAllString(expr, "")
	e = promVariables.ReplaceAllString(e, "")
	e = promMatchers.ReplaceAllString(e, "")
	e = promGrouping.ReplaceAllString(e, "")
	e = promRange.ReplaceAllString(e, "")
	var out []string
	for _, w := range promWord.FindAllString(e, -1) {
		if !promFunctions[w] {
			out = append(out, w)
		}
	}
	return out
}

var (
	sqlTable    = regexp.MustCompile(`(?i)\bFROM\s+([a-z_][a-z0-9_]*)`)
	createTable = regexp.MustCompile(`(?i)CREATE TABLE (?:IF NOT EXISTS )?([a-z_][a-z0-9_]*)`)
)

// migratedTables returns the tables the goose migrations create.
func migratedTables(tb testing.TB) map[string]bool {
	tb.Helper()
	out := map[string]bool{}
	for _, f := range filesUnder(tb, "shared/migrations", ".sql") {
		for _, m := range createTable.FindAllStringSubmatch(string(readFile(tb, f)), -1) {
			out[m[1]] = true
		}
	}
	require.Contains(tb, out, "users")
	return out
}

// exported reports whether name is a registered metric or one of the
// series a histogram or summary adds.
func exported(known map[string]bool, name string) bool {
	if known[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
			return true
		}
	}
	return false
}

// TestGrafanaDashboardQueriesExportedMetrics parses each dashboard and
// checks that every query reads metrics the services export, so that a
// renamed metric cannot leave a panel silently empty.
func TestGrafanaDashboardQueriesExportedMetrics(t *testing.T) {
	t.Parallel()
	known := exportedMetrics(t)
	tables := migratedTables(t)
	files := filesUnder(t, "deploy/monitoring/grafana/dashboards", ".json")
	require.NotEmpty(t, files)
	for _, f := range files {
		var dash struct {
			Title  string `json:"title"`
			UID    string `json:"uid"`
			Panels []struct {
				Title   string `json:"title"`
				Type    string `json:"type"`
				Targets []struct {
					Expr   string `json:"expr"`
					RawSQL string `json:"rawSql"`
				} `json:"targets"`
			} `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(readFile(t, f), &dash), rel(f))
		require.NotEmpty(t, dash.UID, rel(f))
		queries := 0
		for _, p := range dash.Panels {
			if p.Type == "row" {
				continue
			}
			require.NotEmpty(t, p.Targets, "%s panel %q has no query", rel(f), p.Title)
			for _, tg := range p.Targets {
				if tg.RawSQL != "" {
					for _, m := range sqlTable.FindAllStringSubmatch(tg.RawSQL, -1) {
						require.True(t, tables[m[1]], "%s panel %q reads table %s, which no migration creates", rel(f), p.Title, m[1])
					}
					queries++
					continue
				}
				names := metricsIn(tg.Expr)
				require.NotEmpty(t, names, "%s panel %q: %s", rel(f), p.Title, tg.Expr)
				for _, n := range names {
					require.True(t, exported(known, n), "%s panel %q reads %s, which no service exports", rel(f), p.Title, n)
				}
				queries++
			}
		}
		require.Positive(t, queries, rel(f))
	}
}

// TestPrometheusScrapesTheServices checks that the compose scrape config
// names every service at its metrics address (the proxy's and
// accountsvc's METRICS_ADDR port, gpusvc's own port).
func TestPrometheusScrapesTheServices(t *testing.T) {
	t.Parallel()
	b := string(readFile(t, filepath.Join(deployDir, "monitoring", "prometheus-compose.yml")))
	for _, target := range []string{"proxy:9080", "accountsvc:9081", "gpusvc:8091"} {
		require.Contains(t, b, target)
	}
	k8s := string(readFile(t, filepath.Join(deployDir, "monitoring", "prometheus.yml")))
	require.Contains(t, k8s, "__meta_kubernetes_pod_annotation_prometheus_io_scrape")
}
