// Package pages serves the two small HTML pages that emails link to,
// GET /verify/<key> and GET /reset/<key>, so that the links work in the
// local stack (APP_BASE_URL points at the proxy there). In production the
// frontend at nounsai.wtf serves these pages; these are a plain fallback
// that calls the same API routes the frontend calls.
//
// This package must never read or change account state itself.
package pages

import (
	"embed"
	"html/template"
	"net/http"
	"regexp"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apperr"
)

//go:embed *.html
var files embed.FS

// keyPattern accepts the 96-hex keys (and nothing that could break out of
// the page's script).
var keyPattern = regexp.MustCompile(`^[0-9a-fA-F]{32,256}$`)

// Pages renders the verification and reset pages.
type Pages struct {
	tmpl           *template.Template
	challengeToken string
}

// New returns the pages. challengeToken is embedded in the page's script:
// it is the public token the frontend ships to browsers anyway.
func New(challengeToken string) *Pages {
	return &Pages{
		tmpl:           template.Must(template.ParseFS(files, "*.html")),
		challengeToken: challengeToken,
	}
}

// Register adds GET /verify/:key and GET /reset/:key.
func (p *Pages) Register(e *echo.Echo) {
	e.GET("/verify/:key", p.page("verify.html"))
	e.GET("/reset/:key", p.page("reset.html"))
}

func (p *Pages) page(name string) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := c.Param("key")
		if !keyPattern.MatchString(key) {
			return apperr.NotFound("Invalid key")
		}
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
		c.Response().WriteHeader(http.StatusOK)
		return p.tmpl.ExecuteTemplate(c.Response(), name, map[string]string{"Key": key, "Token": p.challengeToken})
	}
}
