// Package apispectest checks code against the OpenAPI document of
// shared/apispec: Load parses and validates it, DiffRoutes compares a
// service's echo routes with the operations the document gives that
// service (x-service), and Validator is an http.RoundTripper that checks
// every request and response passing through it against the document.
//
// This package is for tests only and must never be imported by production
// code.
package apispectest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apispec"
)

// Load parses the embedded document, checks that it is valid OpenAPI and
// returns it.
func Load(tb testing.TB) *openapi3.T {
	tb.Helper()
	doc, err := Parse(apispec.YAML())
	if err != nil {
		tb.Fatal(err)
	}
	return doc
}

// Parse parses and validates an OpenAPI document.
func Parse(data []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("parse the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("invalid OpenAPI document: %w", err)
	}
	return doc, nil
}

// Services returns the services an operation names in x-service (a string
// or a list of strings).
func Services(op *openapi3.Operation) []string {
	switch v := op.Extensions["x-service"].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, s := range v {
			if str, ok := s.(string); ok {
				out = append(out, str)
			}
		}
		return out
	}
	return nil
}

// paramRE matches a path template parameter ({name}).
var paramRE = regexp.MustCompile(`\{[^}]*\}`)

// Operations returns "METHOD /path" for every operation the document gives
// service, with path parameters written {}.
func Operations(doc *openapi3.T, service string) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if slices.Contains(Services(op), service) {
				out = append(out, method+" "+paramRE.ReplaceAllString(path, "{}"))
			}
		}
	}
	slices.Sort(out)
	return out
}

// echoParamRE matches an echo path parameter (:name) or wildcard (*).
var echoParamRE = regexp.MustCompile(`:[^/]+|\*`)

// RouteKeys returns "METHOD /path" for echo routes, with parameters and
// wildcards written {} (a wildcard is one {key} parameter in the document),
// leaving out echo's internal routes and those in ignore (exact keys).
func RouteKeys(routes []*echo.Route, ignore ...string) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range routes {
		if r.Method == echo.RouteNotFound || strings.HasPrefix(r.Name, "echo_route_") && r.Method == "" {
			continue
		}
		k := r.Method + " " + echoParamRE.ReplaceAllString(r.Path, "{}")
		if seen[k] || slices.Contains(ignore, k) {
			continue
		}
		seen[k] = true
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// DiffRoutes fails tb unless the routes of service (as RouteKeys gives
// them) are exactly the document's operations for that service: a route
// missing from the document and an operation no router serves are both
// reported.
func DiffRoutes(tb testing.TB, service string, routes []string) {
	tb.Helper()
	doc := Load(tb)
	spec := Operations(doc, service)
	for _, r := range routes {
		if !slices.Contains(spec, r) {
			tb.Errorf("%s serves %s, which api/openapi.yaml does not describe (add it, with x-service: %s)", service, r, service)
		}
	}
	for _, s := range spec {
		if !slices.Contains(routes, s) {
			tb.Errorf("api/openapi.yaml describes %s on %s, which its router does not serve", s, service)
		}
	}
}

// Validator is an http.RoundTripper that checks each exchange against the
// document: the route must be described; a request the document accepts
// must get a response whose status, named headers and body it describes; a
// request it refuses (bad input on purpose, a missing token) must get a
// 4xx response the operation documents. Failures are reported with
// tb.Errorf, so one run lists them all.
type Validator struct {
	tb     testing.TB
	next   http.RoundTripper
	router routers.Router

	mu         sync.Mutex
	seen       map[string]int
	preflights int
}

// NewValidator wraps next (http.DefaultTransport when nil).
func NewValidator(tb testing.TB, next http.RoundTripper) *Validator {
	tb.Helper()
	doc := Load(tb)
	// Match any host: the stack under test listens on 127.0.0.1:<port>.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		tb.Fatalf("openapi router: %v", err)
	}
	if next == nil {
		next = http.DefaultTransport
	}
	v := &Validator{tb: tb, next: next, router: router, seen: map[string]int{}}
	total := 0
	for _, item := range doc.Paths.Map() {
		total += len(item.Operations())
	}
	tb.Cleanup(func() {
		seen, n := v.Seen(), 0
		for _, c := range seen {
			n += c
		}
		tb.Logf("contract: %d exchanges checked, covering %d of the %d operations in api/openapi.yaml", n, len(seen), total)
	})
	return v
}

// Seen returns how many exchanges each "METHOD /path-template" had.
func (v *Validator) Seen() map[string]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]int, len(v.seen))
	for k, n := range v.seen {
		out[k] = n
	}
	return out
}

// RoundTrip sends req through next and validates the exchange.
func (v *Validator) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := v.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	name := req.Method + " " + req.URL.Path
	if want := req.Header.Get("Access-Control-Request-Method"); req.Method == http.MethodOptions && want != "" {
		v.checkPreflight(req, want, resp)
		return resp, nil
	}
	route, params, ferr := v.router.FindRoute(req)
	if ferr != nil {
		v.tb.Errorf("contract: %s (answered %d) is not in api/openapi.yaml: %v", name, resp.StatusCode, ferr)
		return resp, nil
	}
	v.mu.Lock()
	v.seen[req.Method+" "+route.Path]++
	v.mu.Unlock()

	// Streams are checked for status, content type and headers only:
	// reading them would wait for their end.
	streaming := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	var respBody []byte
	if !streaming {
		respBody, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(respBody))
	}

	vreq := req.Clone(req.Context())
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{
			MultiError: true,
			// Security is the services' business (their tests cover it);
			// a refused request shows up as its documented 401.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
		},
	}
	if !isJSON(req.Header.Get("Content-Type")) && !isForm(req.Header.Get("Content-Type")) {
		in.Options.ExcludeRequestBody = true
	}
	reqErr := openapi3filter.ValidateRequest(req.Context(), in)

	status := resp.StatusCode
	rr := route.Operation.Responses.Status(status)
	if rr == nil || rr.Value == nil {
		v.tb.Errorf("contract: %s answered %d, a status api/openapi.yaml does not list for %s %s\nbody: %.300s",
			name, status, req.Method, route.Path, respBody)
		return resp, nil
	}
	if reqErr != nil && (status < 400 || status >= 500) {
		v.tb.Errorf("contract: %s: api/openapi.yaml refuses the request (%v) but it was answered %d", name, reqErr, status)
	}
	mt := mediaType(resp.Header.Get("Content-Type"))
	if len(rr.Value.Content) > 0 && rr.Value.Content.Get(mt) == nil {
		v.tb.Errorf("contract: %s answered %d with Content-Type %q, which api/openapi.yaml does not list", name, status, mt)
		return resp, nil
	}
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(respBody)),
		Options: &openapi3filter.Options{
			MultiError: true, IncludeResponseStatus: true,
			ExcludeResponseBody: streaming || !isJSON(mt),
		},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), rin); err != nil {
		v.tb.Errorf("contract: %s answered %d, which api/openapi.yaml does not describe: %v\nbody: %.500s", name, status, err, respBody)
	}
	return resp, nil
}

func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return mt
}

func isJSON(ct string) bool {
	mt := mediaType(ct)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func isForm(ct string) bool {
	mt := mediaType(ct)
	return mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data"
}

// checkPreflight checks a CORS preflight: the document describes CORS once
// (in info.description), not as an OPTIONS operation per path, so the
// preflight must name an operation the document has and be allowed.
func (v *Validator) checkPreflight(req *http.Request, method string, resp *http.Response) {
	probe := req.Clone(req.Context())
	probe.Method = method
	if _, _, err := v.router.FindRoute(probe); err != nil {
		v.tb.Errorf("contract: preflight for %s %s, which api/openapi.yaml does not describe: %v", method, req.URL.Path, err)
		return
	}
	if resp.StatusCode >= 300 || resp.Header.Get("Access-Control-Allow-Origin") == "" {
		v.tb.Errorf("contract: preflight for %s %s answered %d without Access-Control-Allow-Origin", method, req.URL.Path, resp.StatusCode)
	}
	v.mu.Lock()
	v.preflights++
	v.mu.Unlock()
}
