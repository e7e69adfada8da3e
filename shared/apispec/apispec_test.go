package apispec_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apispec"
	"github.com/nounsai/sdserver/shared/apispec/apispectest"
)

// TestDocumentValid parses the document, validates it as OpenAPI 3.1
// (examples included) and checks that every operation names its service
// and has an example for each request body.
func TestDocumentValid(t *testing.T) {
	doc := apispectest.Load(t)
	require.Equal(t, "3.1.0", doc.OpenAPI)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			svcs := apispectest.Services(op)
			require.NotEmpty(t, svcs, "%s %s has no x-service", method, path)
			for _, s := range svcs {
				require.Contains(t, []string{"proxy", "accountsvc", "gpusvc"}, s, "%s %s", method, path)
			}
			require.NotEmpty(t, op.OperationID, "%s %s", method, path)
			if op.RequestBody != nil {
				for mt, c := range op.RequestBody.Value.Content {
					require.True(t, c.Example != nil || len(c.Examples) > 0, "%s %s: %s request body has no example", method, path, mt)
				}
			}
		}
	}
}

// TestServe checks the served forms: the JSON is the YAML's content, and
// the page and its script come from the binary.
func TestServe(t *testing.T) {
	s, err := apispec.Load()
	require.NoError(t, err)
	e := echo.New()
	s.Register(e)
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	rec := get("/openapi.json")
	require.Equal(t, http.StatusOK, rec.Code)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &doc))
	require.Equal(t, "3.1.0", doc["openapi"])
	require.Contains(t, doc["paths"], "/v1/images/generations")

	rec = get("/openapi.yaml")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, apispec.YAML(), rec.Body.Bytes())

	rec = get("/docs")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `src="/docs/`+apispec.RedocAsset+`"`)
	require.NotContains(t, rec.Body.String(), "https://", "the page loads nothing from another origin")

	rec = get("/docs/" + apispec.RedocAsset)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Greater(t, rec.Body.Len(), 100_000)
	require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), "text/javascript"))

	require.Equal(t, http.StatusNotFound, get("/docs/other.js").Code)
}
