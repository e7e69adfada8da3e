// Package apispec holds the public API contract: the OpenAPI 3.1 document
// (openapi.yaml, the one copy; api/openapi.yaml at the repository root links
// here) and the reference page that renders it (docsui/, a Redoc bundle
// from the npm registry, pinned and vendored by `make docs-ui`). Register
// serves both on a service: GET /openapi.yaml, GET /openapi.json, GET /docs
// and its script under /docs/.
//
// The document is written by hand; the tests in apispectest (contract,
// route diff) and `make lint` (breaking changes) keep it true.
package apispec

import (
	"bytes"
	_ "embed"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
	"sigs.k8s.io/yaml"
)

//go:embed openapi.yaml
var specYAML []byte

//go:embed docsui/redoc.standalone.js
var redocJS []byte

//go:embed docsui/index.html
var docsHTML []byte

// YAML returns the OpenAPI document as written (a copy).
func YAML() []byte { return bytes.Clone(specYAML) }

// Spec is the document in its served forms, converted once.
type Spec struct {
	yaml, json []byte
}

// Load converts the embedded document to JSON and returns it ready to
// serve; it fails only if the YAML does not parse.
func Load() (*Spec, error) {
	j, err := yaml.YAMLToJSON(specYAML)
	if err != nil {
		return nil, fmt.Errorf("apispec: openapi.yaml: %w", err)
	}
	return &Spec{yaml: specYAML, json: j}, nil
}

// JSON returns the document as JSON (a copy).
func (s *Spec) JSON() []byte { return bytes.Clone(s.json) }

// RedocAsset is the path of the reference page's script, below /docs/.
const RedocAsset = "redoc.standalone.js"

// Register adds GET /openapi.yaml, GET /openapi.json, GET /docs (the
// reference page) and GET /docs/redoc.standalone.js to e. Everything is
// served from the binary: the page loads nothing from another origin.
func (s *Spec) Register(e *echo.Echo) {
	e.GET("/openapi.yaml", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", s.yaml)
	})
	e.GET("/openapi.json", func(c echo.Context) error {
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, s.json)
	})
	e.GET("/docs", func(c echo.Context) error {
		h := c.Response().Header()
		// The page runs only its own script; the bundle renders inline
		// styles and fetches /openapi.json from the same origin.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "+
			"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:")
		return c.Blob(http.StatusOK, echo.MIMETextHTMLCharsetUTF8, docsHTML)
	})
	e.GET("/docs/:asset", func(c echo.Context) error {
		if c.Param("asset") != RedocAsset {
			return echo.ErrNotFound
		}
		c.Response().Header().Set("Cache-Control", "public, max-age=3600")
		return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", redocJS)
	})
}
