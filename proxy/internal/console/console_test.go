package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/admission"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/proxy/internal/console"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/web"
)

const adminToken = "console-admin-token"

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	e     *echo.Echo
	db    *pgxpool.Pool
	clock *clock
	ids   []int64
}

// newFixture serves a console for two api_hosts rows on a fresh database.
func newFixture(tb testing.TB, token string, with ...func(*console.Options)) fixture {
	tb.Helper()
	db := dbtest.New(tb)
	ctx := context.Background()
	var ups []*balancer.Upstream
	var ids []int64
	for _, addr := range []string{"http://10.0.0.7:5000", "http://10.0.0.8:5000"} {
		var id int64
		require.NoError(tb, db.QueryRow(ctx, `INSERT INTO api_hosts (address) VALUES ($1) RETURNING id`, addr).Scan(&id))
		u, err := url.Parse(addr)
		require.NoError(tb, err)
		ups = append(ups, balancer.NewUpstream(id, addr, u))
		ids = append(ids, id)
	}
	acct, err := url.Parse("http://127.0.0.1:8081")
	require.NoError(tb, err)
	clk := &clock{now: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)}
	log := zaptest.NewLogger(tb)
	opts := console.Options{
		AdminToken: token,
		GPU:        balancer.NewPool(ups),
		Account:    balancer.NewPool([]*balancer.Upstream{balancer.NewUpstream(0, acct.String(), acct)}),
		Policy:     "eeft",
		Store:      console.NewStore(db),
		Log:        log,
		SessionTTL: time.Hour,
		Now:        clk.Now,
	}
	for _, w := range with {
		w(&opts)
	}
	c, err := console.New(opts)
	require.NoError(tb, err)
	e := web.New(web.Options{Service: "proxy", Log: log, Registry: prometheus.NewRegistry()})
	c.Routes(e)
	return fixture{e: e, db: db, clock: clk, ids: ids}
}

type response struct {
	status int
	body   string
	header http.Header
	cookie *http.Cookie
}

func (f fixture) do(tb testing.TB, method, target string, form url.Values, cookie *http.Cookie, hdr map[string]string) response {
	tb.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, target, body)
	// As from a TLS terminator on the same machine, whose X-Forwarded-Proto
	// echo believes.
	req.RemoteAddr = "127.0.0.1:40000"
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.e.ServeHTTP(w, req)
	res := w.Result()
	r := response{status: w.Code, body: w.Body.String(), header: w.Header()}
	for _, c := range res.Cookies() {
		if c.Name == console.CookieName {
			r.cookie = c
		}
	}
	return r
}

// login signs in and returns the session cookie and its CSRF token.
func (f fixture) login(tb testing.TB) (*http.Cookie, string) {
	tb.Helper()
	r := f.do(tb, http.MethodPost, "/admin/login", url.Values{"token": {adminToken}}, nil, nil)
	require.Equal(tb, http.StatusSeeOther, r.status, r.body)
	require.Equal(tb, "/admin", r.header.Get("Location"))
	require.NotNil(tb, r.cookie)
	page := f.do(tb, http.MethodGet, "/admin", nil, r.cookie, nil)
	require.Equal(tb, http.StatusOK, page.status, page.body)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page.body)
	require.NotNil(tb, m, page.body)
	return r.cookie, m[1]
}

func (f fixture) draining(tb testing.TB, id int64) bool {
	tb.Helper()
	var d bool
	require.NoError(tb, f.db.QueryRow(context.Background(), `SELECT draining FROM api_hosts WHERE id = $1`, id).Scan(&d))
	return d
}

func TestLoginPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, adminToken)

	// No cookie: the sign-in form, 401, with the hardening headers.
	r := f.do(t, http.MethodGet, "/admin", nil, nil, nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Contains(t, r.header.Get("Content-Type"), "text/html")
	require.Contains(t, r.body, `<form method="post" action="/admin/login"`)
	require.NotContains(t, r.body, "10.0.0.7")
	require.Contains(t, r.header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	require.Equal(t, "DENY", r.header.Get("X-Frame-Options"))
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))

	// The admin token as a header is not a browser session.
	r = f.do(t, http.MethodGet, "/admin", nil, nil, map[string]string{"Authorization": "Bearer " + adminToken})
	require.Equal(t, http.StatusUnauthorized, r.status)

	// A forged cookie is refused.
	r = f.do(t, http.MethodGet, "/admin", nil, &http.Cookie{Name: console.CookieName, Value: "99999999999.forged"}, nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Contains(t, r.body, "/admin/login")
}

func TestLoginWrongToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, adminToken)
	for _, token := range []string{"", "wrong", adminToken + "x", strings.Repeat("a", 10000)} {
		r := f.do(t, http.MethodPost, "/admin/login", url.Values{"token": {token}}, nil, nil)
		require.Equal(t, http.StatusUnauthorized, r.status)
		require.Nil(t, r.cookie)
		require.Contains(t, r.body, "Invalid admin token.")
	}
	// No body at all, or the token in the URL (it would land in logs and
	// history): refused.
	for _, target := range []string{"/admin/login", "/admin/login?token=" + adminToken} {
		r := f.do(t, http.MethodPost, target, nil, nil, nil)
		require.Equal(t, http.StatusUnauthorized, r.status, target)
		require.Nil(t, r.cookie)
	}
	r := f.do(t, http.MethodGet, "/admin?token="+adminToken, nil, nil, nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Nil(t, r.cookie)
}

func TestLoginCookie(t *testing.T) {
	t.Parallel()
	f := newFixture(t, adminToken)
	r := f.do(t, http.MethodPost, "/admin/login", url.Values{"token": {adminToken}}, nil, nil)
	require.Equal(t, http.StatusSeeOther, r.status)
	c := r.cookie
	require.NotNil(t, c)
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, c.SameSite)
	require.False(t, c.Secure, "plain HTTP")
	require.Equal(t, "/admin", c.Path)
	require.NotContains(t, c.Value, adminToken)

	// Behind a TLS terminator the cookie is Secure.
	r = f.do(t, http.MethodPost, "/admin/login", url.Values{"token": {adminToken}}, nil, map[string]string{"X-Forwarded-Proto": "https"})
	require.Equal(t, http.StatusSeeOther, r.status)
	require.True(t, r.cookie.Secure)

	// The cookie opens the page, which lists the hosts with drain buttons.
	page := f.do(t, http.MethodGet, "/admin", nil, c, nil)
	require.Equal(t, http.StatusOK, page.status)
	require.Contains(t, page.body, `data-address="http://10.0.0.7:5000"`)
	require.Contains(t, page.body, `action="/admin/hosts/`)
	require.Contains(t, page.body, "Job queues")
	require.NotContains(t, page.body, adminToken)
	frag := f.do(t, http.MethodGet, "/admin/fragment/hosts", nil, c, nil)
	require.Equal(t, http.StatusOK, frag.status)
	require.Contains(t, frag.body, `id="gpu-hosts"`)
	require.NotContains(t, frag.body, "<html")

	// The session ends after its TTL.
	f.clock.Add(time.Hour)
	require.Equal(t, http.StatusUnauthorized, f.do(t, http.MethodGet, "/admin", nil, c, nil).status)
	require.Equal(t, http.StatusUnauthorized, f.do(t, http.MethodGet, "/admin/fragment/hosts", nil, c, nil).status)
}

func TestAdmissionQueueShown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, adminToken, func(o *console.Options) {
		o.Queue = func() admission.Snapshot {
			return admission.Snapshot{Policy: "fair", Waiting: 3, InFlight: 4, UserCap: 2, Users: []admission.UserStatus{
				{User: "user:42", Waiting: 3, InFlight: 2, WaitSeconds: 1.5},
				{User: "ip:192.0.2.1", InFlight: 2, RemoteInFlight: 1},
			}}
		}
	})
	c, _ := f.login(t)
	frag := f.do(t, http.MethodGet, "/admin/fragment/hosts", nil, c, nil)
	require.Equal(t, http.StatusOK, frag.status)
	require.Contains(t, frag.body, `id="admission-queue"`)
	require.Contains(t, frag.body, "3 waiting · 4 in flight")
	require.Contains(t, frag.body, "per-user cap 2 while others wait")
	require.Regexp(t, `data-user="user:42"><td class="l">user:42</td><td>3</td><td>2</td><td>0 / 0</td><td>1.5 s</td>`, frag.body)
	require.Contains(t, frag.body, `data-user="ip:192.0.2.1"`)
}

func TestFragmentsNeedSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t, adminToken)
	for _, p := range []string{"/admin/fragment/hosts", "/admin/fragment/jobs"} {
		r := f.do(t, http.MethodGet, p, nil, nil, nil)
		require.Equal(t, http.StatusUnauthorized, r.status, p)
		require.JSONEq(t, `{"message":"Sign in at /admin"}`, r.body)
	}
}

func TestDrainNeedsSessionAndCSRF(t *testing.T) {
	t.Parallel()
	f := newFixture(t, adminToken)
	cookie, csrf := f.login(t)
	other, otherCSRF := f.login(t)
	require.NotEqual(t, csrf, otherCSRF, "a CSRF token belongs to one session")
	id := f.ids[0]
	drain := "/admin/hosts/" + itoa(id) + "/drain"

	// No session: 401, whatever the form says.
	r := f.do(t, http.MethodPost, drain, url.Values{"csrf": {csrf}}, nil, nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	// A session without CSRF token, with a wrong one or another session's:
	// 403.
	for _, form := range []url.Values{{}, {"csrf": {"nope"}}, {"csrf": {otherCSRF}}} {
		r = f.do(t, http.MethodPost, drain, form, cookie, nil)
		require.Equal(t, http.StatusForbidden, r.status, form)
		require.Contains(t, r.body, "CSRF")
	}
	// The token in a query string does not count.
	r = f.do(t, http.MethodPost, drain+"?csrf="+url.QueryEscape(csrf), url.Values{}, cookie, nil)
	require.Equal(t, http.StatusForbidden, r.status)
	require.False(t, f.draining(t, id))

	// With both: drained, then undrained.
	r = f.do(t, http.MethodPost, drain, url.Values{"csrf": {csrf}}, cookie, nil)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, "/admin", r.header.Get("Location"))
	require.True(t, f.draining(t, id))
	require.False(t, f.draining(t, f.ids[1]))
	r = f.do(t, http.MethodPost, "/admin/hosts/"+itoa(id)+"/undrain", url.Values{"csrf": {otherCSRF}}, other, nil)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.False(t, f.draining(t, id))

	// Unknown or malformed ids: 404 JSON.
	for _, p := range []string{"/admin/hosts/999999/drain", "/admin/hosts/abc/drain", "/admin/hosts/-1/undrain", "/admin/hosts/99999999999999999999/drain"} {
		r = f.do(t, http.MethodPost, p, url.Values{"csrf": {csrf}}, cookie, nil)
		require.Equal(t, http.StatusNotFound, r.status, p)
		require.JSONEq(t, `{"message":"Host not found"}`, r.body)
	}
	// GET does not drain.
	r = f.do(t, http.MethodGet, drain, nil, cookie, nil)
	require.Equal(t, http.StatusMethodNotAllowed, r.status)

	// Logout needs the CSRF token too, and clears the cookie.
	require.Equal(t, http.StatusForbidden, f.do(t, http.MethodPost, "/admin/logout", url.Values{}, cookie, nil).status)
	r = f.do(t, http.MethodPost, "/admin/logout", url.Values{"csrf": {csrf}}, cookie, nil)
	require.Equal(t, http.StatusSeeOther, r.status)
	require.NotNil(t, r.cookie)
	require.Empty(t, r.cookie.Value)
}

func TestConsoleDisabledWithoutToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/admin"}, {http.MethodPost, "/admin/login"}, {http.MethodGet, "/admin/fragment/hosts"},
		{http.MethodPost, "/admin/hosts/1/drain"},
	} {
		r := f.do(t, tc.method, tc.path, url.Values{"token": {""}}, nil, nil)
		require.Equal(t, http.StatusForbidden, r.status, tc.path)
		require.JSONEq(t, `{"message":"Admin access is disabled"}`, r.body)
	}
}

func TestJobCounts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, adminToken)
	ctx := context.Background()
	_, err := f.db.Exec(ctx, `
		INSERT INTO river_job (kind, args, max_attempts, state, queue, priority)
		VALUES ('image_generate', '{}', 5, 'available', 'default', 1),
		       ('image_generate', '{}', 5, 'available', 'default', 1),
		       ('image_generate', '{}', 5, 'running', 'default', 1),
		       ('video_render', '{}', 5, 'available', 'default', 1)`)
	require.NoError(t, err)
	_, err = f.db.Exec(ctx, `
		INSERT INTO river_job (kind, args, max_attempts, state, queue, priority, finalized_at)
		VALUES ('video_render', '{}', 5, 'discarded', 'default', 1, now())`)
	require.NoError(t, err)

	counts, err := console.NewStore(f.db).JobCounts(ctx)
	require.NoError(t, err)
	require.True(t, counts.RiverTable)
	require.True(t, counts.JobsTable)
	require.ElementsMatch(t, []console.JobCount{
		{Kind: "image_generate", State: "available", Count: 2},
		{Kind: "image_generate", State: "running", Count: 1},
		{Kind: "video_render", State: "available", Count: 1},
		{Kind: "video_render", State: "discarded", Count: 1},
	}, counts.River)
	require.Empty(t, counts.Jobs)

	cookie, _ := f.login(t)
	r := f.do(t, http.MethodGet, "/admin/fragment/jobs", nil, cookie, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Regexp(t, `<tr data-kind="image_generate"><td class="l">image_generate</td><td>2</td>`, r.body)
	require.Contains(t, r.body, "Active jobs")
}

func TestServes(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]bool{
		"/admin":                   true,
		"/admin/login":             true,
		"/admin/logout":            true,
		"/admin/fragment/hosts":    true,
		"/admin/fragment/jobs":     true,
		"/admin/hosts/3/drain":     true,
		"/admin/hosts/3/undrain":   true,
		"/admin/hosts":             false, // the admin package's JSON
		"/admin/hosts/3":           false,
		"/admin/hosts/3/delete":    false,
		"/admin/credits/grants":    false, // accountsvc's
		"/admin/":                  false,
		"/administrator":           false,
		"/images":                  false,
		"/admin/fragment/whatever": false,
	} {
		require.Equal(t, want, console.Serves(path), path)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
