package deploytest

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root relative to this package's directory,
// which is where go test runs the tests.
const repoRoot = "../.."

// deployDir is the directory under test.
var deployDir = filepath.Join(repoRoot, "deploy")

// readFile returns the content of path, failing the test when it is missing.
func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	require.NoError(tb, err)
	return b
}

// filesUnder lists the regular files below dir (relative to the repository
// root) whose names end in one of the suffixes, sorted.
func filesUnder(tb testing.TB, dir string, suffixes ...string) []string {
	tb.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		for _, s := range suffixes {
			if strings.HasSuffix(d.Name(), s) {
				out = append(out, path)
				break
			}
		}
		return nil
	})
	require.NoError(tb, err)
	sort.Strings(out)
	return out
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// yamlDocs splits a YAML stream into its documents, dropping empty ones
// (comments only).
func yamlDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range docSeparator.Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) == "" {
			continue
		}
		out = append(out, []byte(d))
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// rel returns path relative to the repository root, for messages.
func rel(path string) string {
	r, err := filepath.Rel(repoRoot, path)
	if err != nil {
		return path
	}
	return r
}

// TestYAMLParses checks that every YAML file in deploy/ parses, document by
// document, without duplicate keys.
func TestYAMLParses(t *testing.T) {
	t.Parallel()
	files := filesUnder(t, "deploy", ".yaml", ".yml")
	require.NotEmpty(t, files)
	for _, f := range files {
		docs := yamlDocs(readFile(t, f))
		require.NotEmpty(t, docs, "%s has no YAML document", rel(f))
		for i, d := range docs {
			_, err := yaml.YAMLToJSONStrict(d)
			require.NoError(t, err, "%s document %d", rel(f), i+1)
		}
	}
}

// goSources returns the concatenated non-test Go sources of the workspace
// modules, read fresh so that settings and metrics added by others count.
func goSources(tb testing.TB) string {
	tb.Helper()
	var buf bytes.Buffer
	for _, m := range []string{"shared", "proxy", "accountsvc", "gpusvc"} {
		for _, f := range filesUnder(tb, m, ".go") {
			if strings.HasSuffix(f, "_test.go") || strings.Contains(f, string(filepath.Separator)+"testdata"+string(filepath.Separator)) {
				continue
			}
			buf.Write(readFile(tb, f))
			buf.WriteByte('\n')
		}
	}
	return buf.String()
}

// lookPath reports the path of an optional tool, or "" when it is not
// installed (the checks that need it are then skipped, with a message).
func lookPath(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	return p
}
