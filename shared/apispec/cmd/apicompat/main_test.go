package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const base = `openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /users/{id}:
    get:
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema:
                type: object
                properties:
                  id: {type: integer}
                  tags: {type: array, items: {type: object, properties: {name: {type: string}}}}
        '404': {description: gone}
  /health:
    get:
      responses:
        '200': {description: ok}
`

// TestRun checks each kind of removal, and that listing it under
// "## Unreleased" lets it through.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name, from, to, changelog, want string
	}{
		{"unchanged", "", "", "", ""},
		{"an added field is fine", "        '404'", "                  email: {type: string}\n        '404'", "", ""},
		{"removed operation", "  /health:\n    get:\n      responses:\n        '200': {description: ok}\n", "", "",
			"removed operation: GET /health"},
		{"removed status", "        '404': {description: gone}\n", "", "", "removed status: GET /users/{id} 404"},
		{"removed field", "                  id: {type: integer}\n", "", "", "removed field: GET /users/{id} 200 .id"},
		{"removed nested field", "properties: {name: {type: string}}", "properties: {}", "",
			"removed field: GET /users/{id} 200 .tags[].name"},
		{"listed in Unreleased", "        '404': {description: gone}\n", "",
			"## Unreleased\n- `removed status: GET /users/{id} 404`\n\n## 1.0.0\n", ""},
		{"listed under a released version only", "        '404': {description: gone}\n", "",
			"## Unreleased\n\n## 1.0.0\n- removed status: GET /users/{id} 404\n", "removed status: GET /users/{id} 404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cur := base
			if tc.from != "" {
				require.Contains(t, cur, tc.from)
				cur = strings.Replace(cur, tc.from, tc.to, 1)
			}
			write := func(name, data string) string {
				p := filepath.Join(dir, name)
				require.NoError(t, os.WriteFile(p, []byte(data), 0o600))
				return p
			}
			var out strings.Builder
			err := run([]string{"-released", write("old.yaml", base), "-current", write("new.yaml", cur),
				"-changelog", write("CHANGELOG.md", "# Changelog\n\n"+tc.changelog)}, &out)
			if tc.want == "" {
				require.NoError(t, err, out.String())
				return
			}
			require.Error(t, err)
			require.Contains(t, out.String(), "- "+tc.want+"\n")
		})
	}
}
