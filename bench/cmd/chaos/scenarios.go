package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nounsai/sdserver/bench/internal/stack"
)

// generate is the worker of a generating client: user i generates one image.
func (r *runner) generate(ctx context.Context, i int) (string, stack.Response) {
	return "POST /images", r.c.Generate(ctx, r.users[i%len(r.users)])
}

// onHost is the number of generation requests a gpusvc holds (running and
// queued), from its /metrics.
func onHost(ctx context.Context, g *stack.Service) (float64, error) {
	running, err := stack.Metric(ctx, g, "gpusvc_in_flight")
	if err != nil {
		return 0, err
	}
	queued, err := stack.Metric(ctx, g, "gpusvc_queue_depth")
	return running + queued, err
}

// killUnderLoad is scenario 1: one client per user generates through the
// proxy; once the victim holds requests it gets SIGKILL; the load goes on
// for 8 s. Failures must be requests in flight at the kill (at most what
// the victim held); every request started 1 s after the kill must succeed;
// within 60 s every user's balance must equal what it was before minus the
// price of the images delivered (200 with a PNG).
func (r *runner) killUnderLoad(ctx context.Context, rep *report) {
	r.victim = r.s.GPUs[0]
	before := map[int64]float64{}
	for _, u := range r.users {
		c, err := r.c.Credits(ctx, u)
		if err != nil {
			rep.fail("read the balance before: %v", err)
			return
		}
		before[u.ID] = c
	}
	l := startLoad(ctx, len(r.users), 0, r.generate)
	sleep(ctx, 3*time.Second)
	// Kill when the victim holds work, so that some requests are in flight on it.
	var held float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		n, err := onHost(ctx, r.victim)
		if err == nil && n > 0 {
			held = n
			break
		}
		sleep(ctx, 50*time.Millisecond)
	}
	kill := time.Now()
	if err := r.victim.Kill(); err != nil {
		rep.fail("kill -9 %s: %v", r.victim.Name, err)
	}
	sleep(ctx, 8*time.Second)
	calls := l.Stop()

	var ok, failedBefore, failedWindow, failedAfter, failedEarly int
	var delivered = map[int64]int{}
	var late []string
	for _, c := range calls {
		if c.OK() && strings.HasPrefix(c.Header.Get("Content-Type"), "image/png") {
			ok++
			continue
		}
		switch {
		case c.End.Before(kill):
			failedEarly++
			late = append(late, "before the kill: "+c.String())
		case c.Start.Before(kill):
			failedBefore++
		case c.Start.Before(kill.Add(time.Second)):
			failedWindow++
		default:
			failedAfter++
			late = append(late, fmt.Sprintf("started %.1fs after the kill: %s", c.Start.Sub(kill).Seconds(), c))
		}
	}
	// Count delivered images per user (worker i is user i).
	for _, c := range calls {
		if c.OK() && strings.HasPrefix(c.Header.Get("Content-Type"), "image/png") {
			delivered[r.users[c.Worker%len(r.users)].ID]++
		}
	}
	rep.printf("%d clients, %d requests in 11 s: %d delivered, %d failed", len(r.users), len(calls), ok, len(calls)-ok)
	rep.printf("the victim %s held %.0f request(s) (running + queued) when killed", r.victim.Name, held)
	rep.printf("failed: %d in flight at the kill, %d started within 1 s after it, %d started later, %d ended before it",
		failedBefore, failedWindow, failedAfter, failedEarly)
	for _, s := range late[:min(len(late), 5)] {
		rep.printf("  %s", s)
	}
	rep.check(failedEarly == 0, "%d request(s) failed before the kill", failedEarly)
	rep.check(failedAfter == 0, "%d request(s) started 1 s or more after the kill failed", failedAfter)
	rep.check(float64(failedBefore) <= held, "%d in-flight request(s) failed, but the victim held only %.0f", failedBefore, held)
	rep.check(ok > 0, "no image was delivered")

	// Balances: grants minus the price (1 credit) of each delivered image.
	start := time.Now()
	var last []string
	for {
		last = last[:0]
		for _, u := range r.users {
			got, err := r.c.Credits(ctx, u)
			want := before[u.ID] - float64(delivered[u.ID])
			if err != nil {
				last = append(last, fmt.Sprintf("user %d: %v", u.ID, err))
			} else if got != want {
				last = append(last, fmt.Sprintf("user %d: balance %.0f, expected %.0f (%.0f before, %d delivered)", u.ID, got, want, before[u.ID], delivered[u.ID]))
			}
		}
		if len(last) == 0 || time.Since(start) > 60*time.Second || ctx.Err() != nil {
			break
		}
		sleep(ctx, 500*time.Millisecond)
	}
	if len(last) == 0 {
		rep.printf("balances: all %d users = grants - price x delivered images, %.1fs after the load ended (bound 60 s), %.1fs after the kill",
			len(r.users), time.Since(start).Seconds(), time.Since(kill).Seconds())
		return
	}
	rep.printf("balances: %d of %d users still wrong after %.0fs:", len(last), len(r.users), time.Since(start).Seconds())
	for _, s := range last {
		rep.printf("  %s", s)
	}
	rep.fail("balances not equal to grants - delivered images within 60 s")
}

// restart is scenario 2: the victim starts again on its address while the
// clients generate; traffic must reach it within 3 s of its first healthy
// answer.
func (r *runner) restart(ctx context.Context, rep *report) {
	if r.victim == nil {
		r.victim = r.s.GPUs[0]
		if err := r.victim.Kill(); err != nil {
			rep.fail("kill %s: %v", r.victim.Name, err)
			return
		}
	}
	l := startLoad(ctx, len(r.users), 0, r.generate)
	sleep(ctx, time.Second)
	started := time.Now()
	if err := r.victim.Start(); err != nil {
		l.Stop()
		rep.fail("start %s: %v", r.victim.Name, err)
		return
	}
	var healthy, traffic time.Time
	for deadline := started.Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		if stack.Health(ctx, r.victim) {
			healthy = time.Now()
			break
		}
		sleep(ctx, 20*time.Millisecond)
	}
	if healthy.IsZero() {
		l.Stop()
		rep.fail("%s not healthy 30 s after its start", r.victim.Name)
		return
	}
	for deadline := healthy.Add(15 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		held, err1 := onHost(ctx, r.victim)
		done, err2 := stack.Metric(ctx, r.victim, "gpusvc_generation_duration_seconds_count")
		if err1 == nil && err2 == nil && held+done > 0 {
			traffic = time.Now()
			break
		}
		sleep(ctx, 50*time.Millisecond)
	}
	sleep(ctx, 2*time.Second)
	calls := l.Stop()
	failed := 0
	for _, c := range calls {
		if !c.OK() {
			failed++
		}
	}
	rep.printf("%s healthy %.2fs after its start", r.victim.Name, healthy.Sub(started).Seconds())
	if traffic.IsZero() {
		rep.fail("no request reached %s within 15 s of its health", r.victim.Name)
	} else {
		took := traffic.Sub(healthy)
		rep.printf("first request on it %.2fs after its health (bound 3 s; proxy HEALTH_INTERVAL=1s, HEALTH_RISE=2)", took.Seconds())
		rep.check(took <= 3*time.Second, "traffic returned %.2fs after its health, more than 3 s", took.Seconds())
	}
	rep.printf("%d generation requests meanwhile, %d failed", len(calls), failed)
	rep.check(failed == 0, "%d generation request(s) failed during the restart", failed)
}

// reads are the GET routes of scenario 3 and the library reads of scenario
// 4, for user u.
func reads(u stack.User) []string {
	return []string{
		fmt.Sprintf("/users/%d/credits", u.ID),
		fmt.Sprintf("/users/%d/images", u.ID),
		fmt.Sprintf("/users/%d", u.ID),
		fmt.Sprintf("/users/%d/transactions", u.ID),
		fmt.Sprintf("/users/%d/audios", u.ID),
		"/pricing",
		"/images?limit=10",
	}
}

// reader is a worker cycling through the GET routes.
func (r *runner) reader(paths func(stack.User) []string) worker {
	n := 0
	return func(ctx context.Context, i int) (string, stack.Response) {
		u := r.users[i%len(r.users)]
		ps := paths(u)
		p := ps[(n+i)%len(ps)]
		n++
		route := "GET " + strings.NewReplacer(fmt.Sprint(u.ID), "<id>").Replace(strings.SplitN(p, "?", 2)[0])
		return route, r.c.Do(ctx, stack.Request{Method: "GET", Path: p, Token: u.Token})
	}
}

// uploader is a worker uploading a small unique PNG to the library.
func (r *runner) uploader(ctx context.Context, i int) (string, stack.Response) {
	return "POST /user-images", r.c.Upload(ctx, r.users[i%len(r.users)], "chaos.png", randomPNG())
}

// randomPNG is a 16×16 PNG of random colours (unique bytes, so every upload
// is a new row).
func randomPNG() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for p := 0; p < len(img.Pix); p += 4 {
		img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = byte(rand.IntN(256)), byte(rand.IntN(256)), byte(rand.IntN(256)), 255
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

// terminateBackends is scenario 3: readers cycle the GET routes, writers
// generate and upload; pg_terminate_backend ends every connection of the
// stack's database. No GET may answer 5xx; writes started 3 s after the
// blip must all succeed. Then a new gpusvc is added with an INSERT into
// api_hosts: the proxy must pick it up (its LISTEN connection was among
// those killed) and send it traffic.
func (r *runner) terminateBackends(ctx context.Context, rep *report) {
	// The host added at the end starts now, so its start-up is not timed.
	extra, err := r.s.AddGPU(ctx, false)
	if err != nil {
		rep.fail("start one more gpusvc: %v", err)
		return
	}
	readers := startLoad(ctx, 4, 20*time.Millisecond, r.reader(reads))
	writers := startLoad(ctx, 2, 50*time.Millisecond, func(ctx context.Context, i int) (string, stack.Response) {
		if i == 0 {
			return r.generate(ctx, i)
		}
		return r.uploader(ctx, i)
	})
	sleep(ctx, 2*time.Second)
	blip := time.Now()
	n, err := r.s.TerminateBackends(ctx)
	if err != nil {
		rep.fail("%v", err)
	}
	rep.printf("pg_terminate_backend ended %d connection(s) of the stack's database", n)
	sleep(ctx, 6*time.Second)
	rcalls := readers.Stop()
	wcalls := writers.Stop()

	type tally struct{ n, s5xx, other int }
	perRoute := map[string]*tally{}
	total5xx := 0
	var examples []string
	for _, c := range rcalls {
		t := perRoute[c.Route]
		if t == nil {
			t = &tally{}
			perRoute[c.Route] = t
		}
		t.n++
		switch {
		case c.Status >= 500 || c.Status == 0:
			t.s5xx++
			total5xx++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s at %+.2fs: %s", c.Route, c.Start.Sub(blip).Seconds(), c))
			}
		case !c.OK():
			t.other++
		}
	}
	routes := make([]string, 0, len(perRoute))
	for k := range perRoute {
		routes = append(routes, k)
	}
	slices.Sort(routes)
	var parts []string
	for _, k := range routes {
		parts = append(parts, fmt.Sprintf("%s %d/%d", k, perRoute[k].s5xx, perRoute[k].n))
	}
	rep.printf("GET 5xx (or no answer) / requests: %d / %d: %s", total5xx, len(rcalls), strings.Join(parts, ", "))
	for _, e := range examples {
		rep.printf("  %s", e)
	}
	rep.check(total5xx == 0, "%d GET request(s) answered 5xx or not at all", total5xx)

	var firstOK time.Time
	failedLate, failedEarly, failedBefore := 0, 0, 0
	for _, c := range wcalls {
		if c.OK() {
			if c.Start.After(blip) && (firstOK.IsZero() || c.End.Before(firstOK)) {
				firstOK = c.End
			}
			continue
		}
		switch {
		case c.End.Before(blip):
			failedBefore++
		case c.Start.Before(blip.Add(3 * time.Second)):
			failedEarly++
		default:
			failedLate++
			if len(examples) < 10 {
				rep.printf("  write at %+.2fs: %s %s", c.Start.Sub(blip).Seconds(), c.Route, c)
			}
		}
	}
	rep.printf("writes (generation, upload): %d, failed: %d before the blip, %d within 3 s after it, %d later", len(wcalls), failedBefore, failedEarly, failedLate)
	if firstOK.IsZero() {
		rep.fail("no write succeeded after the blip")
	} else {
		rep.printf("first write started after the blip succeeded %.2fs after it", firstOK.Sub(blip).Seconds())
	}
	rep.check(failedBefore == 0, "%d write(s) failed before the blip", failedBefore)
	rep.check(failedLate == 0, "%d write(s) started 3 s or more after the blip failed", failedLate)

	// Hot reload after the blip: INSERT the new host, wait for traffic on it.
	added := time.Now()
	if err := r.s.RegisterGPU(ctx, extra); err != nil {
		rep.fail("INSERT INTO api_hosts: %v", err)
		return
	}
	l := startLoad(ctx, len(r.users), 0, r.generate)
	var inPool, traffic time.Time
	for deadline := added.Add(20 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		if inPool.IsZero() {
			if ok, _ := r.s.Healthy(ctx, extra); ok {
				inPool = time.Now()
			}
		}
		held, err1 := onHost(ctx, extra)
		done, err2 := stack.Metric(ctx, extra, "gpusvc_generation_duration_seconds_count")
		if err1 == nil && err2 == nil && held+done > 0 {
			traffic = time.Now()
			break
		}
		sleep(ctx, 50*time.Millisecond)
	}
	calls := l.Stop()
	failed := 0
	for _, c := range calls {
		if !c.OK() {
			failed++
		}
	}
	if traffic.IsZero() {
		rep.fail("the host added with INSERT INTO api_hosts got no request within 20 s (hot reload broken after the blip?)")
		return
	}
	if !inPool.IsZero() {
		rep.printf("hot reload: %s healthy in the proxy's pool %.2fs after its INSERT", extra.Name, inPool.Sub(added).Seconds())
	}
	rep.printf("hot reload: first request on %s %.2fs after its INSERT (bound 5 s; %d generations meanwhile, %d failed)",
		extra.Name, traffic.Sub(added).Seconds(), len(calls), failed)
	rep.check(traffic.Sub(added) <= 5*time.Second, "the added host got traffic only %.2fs after its INSERT", traffic.Sub(added).Seconds())
}

// redisDown is scenario 4: Redis is stopped for 10 s while clients log in,
// generate and read their library; every answer must be 2xx. Then Redis
// starts again and the same requests must still succeed.
func (r *runner) redisDown(ctx context.Context, rep *report) {
	w := func(ctx context.Context, i int) (string, stack.Response) {
		// Bounded: a request hanging on the missing Redis fails after 15 s
		// rather than holding the scenario for the client's 60 s.
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		u := r.users[i%len(r.users)]
		switch i % 3 {
		case 0:
			return "POST /login", r.c.Login(ctx, u.Email, u.Password)
		case 1:
			return r.generate(ctx, i)
		default:
			return r.reader(func(u stack.User) []string {
				return []string{fmt.Sprintf("/users/%d/images", u.ID), fmt.Sprintf("/users/%d/audios", u.ID), fmt.Sprintf("/users/%d/videos", u.ID)}
			})(ctx, i)
		}
	}
	if err := r.s.Redis.Stop(); err != nil {
		rep.fail("stop Redis: %v", err)
		return
	}
	down := time.Now()
	l := startLoad(ctx, 6, 100*time.Millisecond, w)
	sleep(ctx, 10*time.Second)
	calls := l.Stop()
	up := time.Now()
	if err := r.s.Redis.Start(ctx); err != nil {
		rep.fail("start Redis again: %v", err)
		return
	}
	rep.printf("Redis down for %.1fs", up.Sub(down).Seconds())
	type tally struct {
		n, bad  int
		slowest time.Duration
	}
	per := map[string]*tally{}
	var examples []string
	for _, c := range calls {
		route := c.Route
		if strings.HasPrefix(route, "GET") {
			route = "library reads"
		}
		t := per[route]
		if t == nil {
			t = &tally{}
			per[route] = t
		}
		t.n++
		t.slowest = max(t.slowest, c.Took())
		if !c.OK() {
			t.bad++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s at %+.2fs: %s", c.Route, c.Start.Sub(down).Seconds(), c))
			}
		}
	}
	bad := 0
	for _, route := range []string{"POST /login", "POST /images", "library reads"} {
		t := per[route]
		if t == nil {
			t = &tally{}
		}
		bad += t.bad
		rep.printf("%-14s %3d requests, %d not 2xx, slowest %.2fs", route, t.n, t.bad, t.slowest.Seconds())
		rep.check(t.n > 0, "no %s request completed while Redis was down", route)
	}
	for _, e := range examples {
		rep.printf("  %s", e)
	}
	rep.check(bad == 0, "%d request(s) did not answer 2xx while Redis was down", bad)

	// After Redis is back: the same mix answers 2xx again within 5 s.
	var back time.Time
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		ok := true
		for i := range 3 {
			if _, resp := w(ctx, i); !resp.OK() {
				ok = false
			}
		}
		if ok {
			back = time.Now()
			break
		}
		sleep(ctx, 100*time.Millisecond)
	}
	if back.IsZero() {
		rep.fail("login, generation and library reads not all 2xx within 5 s of Redis starting again")
	} else {
		rep.printf("after Redis started again: login, generation and a library read all 2xx %.2fs later", back.Sub(up).Seconds())
	}
}

// bodySize is the oversized body of scenario 5.
const bodySize = 10 << 20

// oversizedBody is scenario 5: a client that writes its whole 10 MB JSON
// body before reading (no Expect: 100-continue, like browsers and Python's
// urllib) must read a 413 with a JSON body.
func (r *runner) oversizedBody(ctx context.Context, rep *report) {
	targets := []struct{ name, addr, path string }{
		{"proxy -> accountsvc (POST /users)", r.s.Proxy.Addr, "/users"},
		{"proxy -> gpusvc (POST /images)", r.s.Proxy.Addr, "/images"},
		{"accountsvc directly (POST /users)", r.s.Account.Addr, "/users"},
	}
	for _, t := range targets {
		res := sendOversized(ctx, t.addr, t.path, r.users[0].Token)
		rep.printf("%-36s %s", t.name, res)
		// A client like urllib stops at the failed write: the 413 must
		// come after the whole body was accepted (read and discarded).
		rep.check(res.writeErr == nil && res.err == nil && res.status == http.StatusRequestEntityTooLarge && res.json,
			"%s: wanted the whole 10 MB accepted, then a 413 with a JSON body", t.name)
	}
}

// oversized is what a client sending an oversized body saw.
type oversized struct {
	written     int64
	writeErr    error
	status      int
	contentType string
	body        string
	json        bool
	err         error
	took        time.Duration
}

func (o oversized) String() string {
	s := fmt.Sprintf("wrote %.1f of %.1f MB", float64(o.written)/(1<<20), float64(bodySize)/(1<<20))
	if o.writeErr != nil {
		s += fmt.Sprintf(" (write failed: %v)", o.writeErr)
	}
	if o.err != nil {
		return s + fmt.Sprintf(", no response: %v (%.2fs)", o.err, o.took.Seconds())
	}
	body := strings.TrimSpace(o.body)
	if len(body) > 80 {
		body = body[:80] + "..."
	}
	return s + fmt.Sprintf(", got %d %s %s (%.2fs)", o.status, o.contentType, body, o.took.Seconds())
}

// sendOversized writes a POST with a 10 MB JSON body on a raw connection,
// all of it before reading, then reads the response.
func sendOversized(ctx context.Context, addr, path, token string) (o oversized) {
	start := time.Now()
	defer func() { o.took = time.Since(start) }()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		o.err = err
		return o
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
		"challenge-token: %s\r\nAuthorization: %s\r\nUser-Agent: chaos-suite (no Expect)\r\n\r\n", path, addr, bodySize, stack.Challenge, token)
	prefix := `{"email":"big@example.com","password":"`
	suffix := `"}`
	if _, err := io.WriteString(conn, head+prefix); err != nil {
		o.writeErr = err
	}
	o.written = int64(len(prefix))
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	for o.writeErr == nil && o.written < bodySize-int64(len(suffix)) {
		n := min(int64(len(chunk)), bodySize-int64(len(suffix))-o.written)
		m, err := conn.Write(chunk[:n])
		o.written += int64(m)
		if err != nil {
			o.writeErr = err
		}
	}
	if o.writeErr == nil {
		m, err := io.WriteString(conn, suffix)
		o.written += int64(m)
		o.writeErr = err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		o.err = err
		return o
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	o.status, o.contentType, o.body = resp.StatusCode, resp.Header.Get("Content-Type"), string(data)
	if err != nil {
		o.err = fmt.Errorf("read the response body: %w", err)
	}
	o.json = strings.HasPrefix(o.contentType, "application/json") && json.Valid(data)
	return o
}
