// Package console serves the proxy's operator console at /admin: a
// server-rendered page (html/template, no build step) showing every GPU
// host's state, health, in-flight and queued work, latency and error counts,
// the GPU admission queue per user,
// refreshed every few seconds by a little vanilla JavaScript, with drain and
// undrain buttons; and the job queues' counts by kind and state.
//
// A browser signs in once with the admin token through a form; the console
// answers with an HttpOnly, SameSite=Strict cookie (Secure over HTTPS) that
// holds an expiry and an HMAC keyed by a hash of the token, never the token.
// Every form post also carries a CSRF token derived from that cookie.
//
// Drain and undrain write api_hosts.draining; the table's trigger notifies
// every proxy. This package must never forward requests to upstreams nor
// change any api_hosts column other than draining.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/proxy/internal/admission"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/adminguard"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/web"
)

//go:embed templates/*.html
var templateFS embed.FS

// CookieName is the session cookie's name.
const CookieName = "proxy_console"

// DefaultSessionTTL is how long a sign-in lasts when Options.SessionTTL is 0.
const DefaultSessionTTL = 12 * time.Hour

// queryTimeout bounds the console's own database statements.
const queryTimeout = 5 * time.Second

// Reloader reloads the GPU host registry at once, so that the page shown
// after a drain already reflects it (the NOTIFY would within a second).
type Reloader interface {
	Reload(ctx context.Context) ([]*balancer.Upstream, error)
}

// Options configure New.
type Options struct {
	// AdminToken is the operator token; empty disables the console (every
	// route answers 403).
	AdminToken string
	// GPU and Account are the upstream pools shown. Required.
	GPU, Account *balancer.Pool
	// Policy is the GPU balancing policy's name, for display.
	Policy string
	// Store writes the drain flag and counts the jobs. Required.
	Store *Store
	// Hosts, when set, is reloaded after a drain change.
	Hosts Reloader
	// Log receives the audit line of each drain change. Required.
	Log *zap.Logger
	// Guard, when set, rate-limits and audits every console route per
	// client IP (adminguard: a stricter limit on the sign-in).
	Guard *adminguard.Guard
	// Queue, when set, returns the GPU admission queue shown under the
	// hosts.
	Queue func() admission.Snapshot
	// SessionTTL is how long a sign-in lasts; 0 means DefaultSessionTTL.
	SessionTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Console serves the operator console. It is safe for concurrent use.
type Console struct {
	opts     Options
	sessions *sessions
	tmpl     *template.Template
}

// New returns the console. It fails only if the embedded templates do not
// parse.
func New(opts Options) (*Console, error) {
	opts.SessionTTL = config.OrDefault(opts.SessionTTL, DefaultSessionTTL)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GPU == nil || opts.Account == nil || opts.Store == nil || opts.Log == nil {
		return nil, errors.New("console: GPU, Account, Store and Log are required")
	}
	tmpl, err := template.New("console").Funcs(template.FuncMap{
		"inc": func(n int) int { return n + 1 },
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return &Console{opts: opts, sessions: newSessions(opts.AdminToken, opts.SessionTTL), tmpl: tmpl}, nil
}

// Serves reports whether path is one of the console's paths, so that the
// proxy's router sends it to echo rather than upstream. Other /admin/...
// paths (accountsvc's admin API) are not the console's.
func Serves(path string) bool {
	switch path {
	case "/admin", "/admin/login", "/admin/logout", "/admin/fragment/hosts", "/admin/fragment/jobs":
		return true
	}
	rest, ok := strings.CutPrefix(path, "/admin/hosts/")
	if !ok {
		return false
	}
	_, action, ok := strings.Cut(rest, "/")
	return ok && (action == "drain" || action == "undrain")
}

// Routes registers the console's routes on e. (No echo Group: a group's
// middleware would register catch-all routes.)
func (c *Console) Routes(e *echo.Echo) {
	base := []echo.MiddlewareFunc{c.headers, c.enabled}
	login := base
	if g := c.opts.Guard; g != nil {
		base = []echo.MiddlewareFunc{g.Session(CookieName), c.headers, c.enabled}
		login = []echo.MiddlewareFunc{g.Login(), c.headers, c.enabled}
	}
	session := append(base[:len(base):len(base)], c.requireSession)
	form := append(session[:len(session):len(session)], c.requireCSRF)
	e.GET("/admin", c.handlePage, base...)
	e.POST("/admin/login", c.handleLogin, login...)
	e.POST("/admin/logout", c.handleLogout, form...)
	e.GET("/admin/fragment/hosts", c.handleHostsFragment, session...)
	e.GET("/admin/fragment/jobs", c.handleJobsFragment, session...)
	e.POST("/admin/hosts/:id/drain", c.handleHostDrain, form...)
	e.POST("/admin/hosts/:id/undrain", c.handleHostUndrain, form...)
}

// headers sets the headers every console response carries: nothing is
// cached, framed (clickjacking the drain buttons) or leaked in Referer.
func (c *Console) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		h := ec.Response().Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		return next(ec)
	}
}

// enabled refuses every console route when no admin token is set.
func (c *Console) enabled(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		if !c.sessions.enabled() {
			return apperr.Forbidden("Admin access is disabled")
		}
		return next(ec)
	}
}

// session returns the request's valid session cookie value.
func (c *Console) session(ec echo.Context) (string, bool) {
	ck, err := ec.Cookie(CookieName)
	if err != nil || !c.sessions.valid(ck.Value, c.opts.Now()) {
		return "", false
	}
	return ck.Value, true
}

const sessionKey = "console_session"

// requireSession answers 401 without a valid session cookie.
func (c *Console) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		v, ok := c.session(ec)
		if !ok {
			return apperr.Unauthorized("Sign in at /admin")
		}
		ec.Set(sessionKey, v)
		return next(ec)
	}
}

// requireCSRF answers 403 unless the form's csrf field matches the
// session. It runs after requireSession.
func (c *Console) requireCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		v, _ := ec.Get(sessionKey).(string)
		// The body only, so that a link cannot carry the token.
		if !c.sessions.validCSRF(v, ec.Request().PostFormValue("csrf")) {
			return apperr.Forbidden("Missing or invalid CSRF token; reload the page")
		}
		return next(ec)
	}
}

// pageData is what the page and login templates read.
type pageData struct {
	Title string
	Nonce string
	Error string
	Hosts hostsView
	Jobs  jobsView
}

// render executes a template into memory first, so that a failure never
// sends half a page. Full pages get a CSP allowing only their own inline
// style and script.
func (c *Console) render(ec echo.Context, status int, name string, data any) error {
	var buf bytes.Buffer
	if err := c.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		return err
	}
	return ec.HTMLBlob(status, buf.Bytes())
}

func (c *Console) renderPage(ec echo.Context, status int, name string, data pageData) error {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	data.Nonce = base64.RawStdEncoding.EncodeToString(nonce[:])
	ec.Response().Header().Set("Content-Security-Policy",
		"default-src 'none'; style-src 'nonce-"+data.Nonce+"'; script-src 'nonce-"+data.Nonce+"'; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	return c.render(ec, status, name, data)
}

func (c *Console) hostsView(csrf string) hostsView {
	v := newHostsView(c.opts.Policy, c.opts.GPU, c.opts.Account, csrf, c.opts.Now())
	if c.opts.Queue != nil {
		q := c.opts.Queue()
		v.Queue = &q
	}
	return v
}

// jobsView counts the jobs; a database failure is shown on the page
// rather than failing it, since the host table is still useful.
func (c *Console) jobsView(ctx context.Context) jobsView {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	counts, err := c.opts.Store.JobCounts(ctx)
	v := newJobsView(counts, c.opts.Now())
	if err != nil {
		c.opts.Log.Warn("count jobs", zap.Error(err))
		v.Error = "Could not count the jobs: the database did not answer."
	}
	return v
}

// handlePage shows the console, or the sign-in form (401) without a valid
// session.
func (c *Console) handlePage(ec echo.Context) error {
	v, ok := c.session(ec)
	if !ok {
		return c.renderPage(ec, http.StatusUnauthorized, "login", pageData{Title: "Sign in"})
	}
	return c.renderPage(ec, http.StatusOK, "page", pageData{
		Title: "Console",
		Hosts: c.hostsView(c.sessions.csrf(v)),
		Jobs:  c.jobsView(ec.Request().Context()),
	})
}

// maxTokenLen bounds the token field of the sign-in form.
const maxTokenLen = 512

// handleLogin checks the admin token from the sign-in form; on success it
// sets the session cookie and redirects to /admin, otherwise it shows the
// form again with 401.
func (c *Console) handleLogin(ec echo.Context) error {
	// The body only: a token in the URL would land in logs and history.
	token := ec.Request().PostFormValue("token")
	if len(token) > maxTokenLen || !c.sessions.checkToken(token) {
		c.opts.Log.Warn("console sign-in refused", zap.String("remote", ec.RealIP()))
		return c.renderPage(ec, http.StatusUnauthorized, "login", pageData{Title: "Sign in", Error: "Invalid admin token."})
	}
	value, exp := c.sessions.issue(c.opts.Now())
	ec.SetCookie(c.cookie(ec, value, exp))
	c.opts.Log.Info("console sign-in", zap.String("remote", ec.RealIP()))
	return ec.Redirect(http.StatusSeeOther, "/admin")
}

// handleLogout clears the session cookie.
func (c *Console) handleLogout(ec echo.Context) error {
	ck := c.cookie(ec, "", time.Unix(0, 0))
	ck.MaxAge = -1
	ec.SetCookie(ck)
	return ec.Redirect(http.StatusSeeOther, "/admin")
}

func (c *Console) cookie(ec echo.Context, value string, exp time.Time) *http.Cookie {
	return &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/admin",
		Expires:  exp,
		HttpOnly: true,
		// echo believes X-Forwarded-Proto only from loopback and private
		// peers (a TLS terminator); a spoofed one could only make the
		// cookie Secure on plain HTTP, which harms nobody but the spoofer.
		Secure:   ec.Scheme() == "https",
		SameSite: http.SameSiteStrictMode,
	}
}

// handleHostsFragment returns the hosts tables, for the page's refresh.
func (c *Console) handleHostsFragment(ec echo.Context) error {
	v, _ := ec.Get(sessionKey).(string)
	return c.render(ec, http.StatusOK, "hosts", c.hostsView(c.sessions.csrf(v)))
}

// handleJobsFragment returns the job queue tables, for the page's refresh.
func (c *Console) handleJobsFragment(ec echo.Context) error {
	return c.render(ec, http.StatusOK, "jobs", c.jobsView(ec.Request().Context()))
}

// handleHostDrain stops new requests to a host; in-flight ones finish.
func (c *Console) handleHostDrain(ec echo.Context) error { return c.setDraining(ec, true) }

// handleHostUndrain lets a drained host receive requests again.
func (c *Console) handleHostUndrain(ec echo.Context) error { return c.setDraining(ec, false) }

func (c *Console) setDraining(ec echo.Context, draining bool) error {
	id, err := web.PathInt64(ec, "id", "Host")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ec.Request().Context(), queryTimeout)
	defer cancel()
	if err := c.opts.Store.SetDraining(ctx, id, draining); err != nil {
		return err
	}
	c.opts.Log.Info("api host draining set by console",
		zap.Int64("host_id", id), zap.Bool("draining", draining), zap.String("remote", ec.RealIP()))
	if c.opts.Hosts != nil {
		// The NOTIFY reloads every proxy anyway; reloading here makes the
		// page after the redirect show the change already.
		if _, err := c.opts.Hosts.Reload(ctx); err != nil {
			c.opts.Log.Warn("reload api hosts after drain change", zap.Error(err))
		}
	}
	return ec.Redirect(http.StatusSeeOther, "/admin")
}
