// Command fairness measures how fairly the GPU fleet is shared (issue 17,
// make bench-fairness): it starts the real stack (package stack: the
// built binaries, two gpusvc with GPU_SLOTS slots each and the built-in
// backend paced to -service seconds per image, its own PostgreSQL and
// Redis) once per policy and drives the same scenario through the proxy:
//
//   - user A floods: -flood concurrent synchronous POST /images loops and
//     -async POST /v1/images/generations queued at the start;
//   - users B, C and D each send one synchronous POST /images every
//     -period (staggered), the light users whose wait fairness protects.
//
// Policies: "fifo" (ADMISSION_POLICY=fifo, JOB_FAIRNESS=fifo: today's
// order) and "fair" (ADMISSION_POLICY=fair, JOB_FAIRNESS=fair). A client
// answered 503 or 429 retries after Retry-After (at most a second), as
// the frontend does; a request's latency runs from its first attempt to
// its answer. Over the measured window it reports, side by side:
//
//   - B–D p50/p99 wait of the requests sent in the window: latency − the
//     service time (the mean time a generation held its GPU slot, from
//     gpusvc_generation_duration_seconds); one still unanswered -drain
//     after the window counts with its wait so far;
//   - A's throughput: A's images finished in the window (sync answers and
//     async jobs COMPLETED), per second;
//   - fleet utilisation: busy slot-seconds (the same histogram's sum over
//     every gpusvc) / (slots × window).
//
// Targets (verdicts on the fair run): B–D p99 wait ≤ 1.5 × service time;
// utilisation ≥ 95 % of FIFO's; A's throughput ≥ 90 % of the capacity B–D
// leave (fleet images/s − B–D's images/s).
//
// It prints Markdown and, with -results DIR, writes DIR/fairness.md and
// DIR/fairness.targets (bench/run.sh fragments). It exits 1 when a target
// is missed.
//
// Usage: fairness [-bin DIR] [-results DIR] [-policies fifo,fair] ...
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nounsai/sdserver/bench/internal/stack"
	"github.com/nounsai/sdserver/shared/clock"
)

func main() {
	os.Exit(run())
}

// settings are the scenario's knobs (flags).
type settings struct {
	bin             string
	service         float64
	gpus, slots     int
	flood, async    int
	period          time.Duration
	warmup, measure time.Duration
	drain           time.Duration
}

// result is one policy's run.
type result struct {
	policy string
	// waits are B–D's waits (latency − service time).
	waits []time.Duration
	// bdUnfinished counts B–D requests of the window still without an
	// image when the drain ended; their wait counts as the time so far.
	bdUnfinished int
	// bdRefused counts B–D requests that were refused (503 or 429) at
	// least once before they got their image.
	bdRefused int
	// service is the mean slot hold of one image in the window.
	service time.Duration
	// aSync, aAsync are A's images finished in the window.
	aSync, aAsync int
	// bdImages are B–D's images finished in the window.
	bdImages int
	// busy is the slot-seconds spent generating in the window.
	busy   float64
	window time.Duration
	slots  int
}

func (r result) util() float64 { return r.busy / (float64(r.slots) * r.window.Seconds()) }
func (r result) aRate() float64 {
	return float64(r.aSync+r.aAsync) / r.window.Seconds()
}

// left is the capacity B–D leave, in images per second.
func (r result) left() float64 {
	return float64(r.slots)/r.service.Seconds() - float64(r.bdImages)/r.window.Seconds()
}

func (r result) pct(p float64) time.Duration {
	if len(r.waits) == 0 {
		return 0
	}
	w := slices.Clone(r.waits)
	slices.Sort(w)
	i := int(p*float64(len(w))+0.5) - 1
	return w[min(max(i, 0), len(w)-1)]
}

func run() int {
	var st settings
	flag.StringVar(&st.bin, "bin", "bin", "folder holding the proxy, accountsvc and gpusvc binaries")
	flag.Float64Var(&st.service, "service", 1, "paced GPU seconds per image (GPU_BASE_SECONDS)")
	flag.IntVar(&st.gpus, "gpus", 2, "gpusvc processes")
	flag.IntVar(&st.slots, "slots", 2, "GPU slots per gpusvc (GPU_SLOTS)")
	flag.IntVar(&st.flood, "flood", 64, "user A's concurrent synchronous requests")
	flag.IntVar(&st.async, "async", 200, "user A's async jobs queued at the start")
	flag.DurationVar(&st.period, "period", 3*time.Second, "interval between the requests of each of B, C and D")
	flag.DurationVar(&st.warmup, "warmup", 10*time.Second, "load before the window opens")
	flag.DurationVar(&st.measure, "measure", 60*time.Second, "measured window")
	flag.DurationVar(&st.drain, "drain", 20*time.Second, "load after the window, for its requests to finish")
	results := flag.String("results", "", "folder for fairness.md and fairness.targets (bench/run.sh fragments)")
	policies := flag.String("policies", "fifo,fair", "policies to run, in order")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var out []result
	for _, p := range strings.Split(*policies, ",") {
		r, err := scenario(ctx, st, p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fairness: %s: %v\n", p, err)
			return 2
		}
		out = append(out, r)
	}
	return report(out, st, *results)
}

// scenario starts a stack with policy and runs the load once.
func scenario(ctx context.Context, st settings, policy string) (result, error) {
	fmt.Fprintf(os.Stderr, "fairness: %s: starting the stack\n", policy)
	s, err := stack.Start(ctx, stack.Config{
		BinDir: st.bin, GPUs: st.gpus,
		Env: map[string]string{"RATE_LIMITS": "off", "SIGNUP_BONUS_CREDITS": "1000000", "LOG_LEVEL": "warn",
			"JOB_FAIRNESS": policy, "JOB_MAX_QUEUED_PER_USER": strconv.Itoa(st.async + 16)},
		ProxyEnv: map[string]string{"ADMISSION_POLICY": policy},
		GPUEnv: map[string]string{"GPU_BASE_SECONDS": strconv.FormatFloat(st.service, 'f', -1, 64),
			"GPU_SLOTS": strconv.Itoa(st.slots), "GPU_QUEUE": strconv.Itoa(2 * st.slots), "GPU_QUEUE_WAIT": "20s",
			"WORKER_CONCURRENCY": strconv.Itoa(st.slots), "JOB_MAX_RUNNING_PER_USER": "2"},
	})
	if err != nil {
		return result{}, fmt.Errorf("the stack did not start: %w", err)
	}
	defer s.Close()
	c := stack.NewClient(s.Proxy.URL(), st.flood+16)
	users := make([]stack.User, 4)
	for i := range users {
		if users[i], err = c.Signup(ctx, s.OutboxDir, fmt.Sprintf("fair-%c-%d@example.com", 'a'+i, time.Now().UnixNano())); err != nil {
			return result{}, err
		}
	}

	// A's backlog of async jobs, queued before anything else runs.
	var queued atomic.Int64
	var wg sync.WaitGroup
	next := make(chan struct{})
	go func() {
		defer close(next)
		for range st.async {
			next <- struct{}{}
		}
	}()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				r := c.Do(ctx, stack.Request{Method: http.MethodPost, Path: "/v1/images/generations", Token: users[0].Token,
					Body: body(), ContentType: "application/json"})
				if r.Status == http.StatusAccepted {
					queued.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(os.Stderr, "fairness: %s: A queued %d async jobs; flood and light users start\n", policy, queued.Load())

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	begin := time.Now()
	from, until := begin.Add(st.warmup), begin.Add(st.warmup+st.measure)
	var mu sync.Mutex
	var aDone []time.Time
	type light struct {
		start, end time.Time
		refusals   []string
	}
	var bd []light
	for range st.flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				if _, end, _, ok := generate(loadCtx, c, users[0]); ok {
					mu.Lock()
					aDone = append(aDone, end)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 1; i <= 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if clock.Sleep(loadCtx, time.Duration(i-1)*st.period/3) != nil {
				return
			}
			t := time.NewTicker(st.period)
			defer t.Stop()
			var inner sync.WaitGroup
			defer inner.Wait()
			for {
				inner.Add(1)
				go func() {
					defer inner.Done()
					start, end, refusals, ok := generate(loadCtx, c, users[i])
					mu.Lock()
					defer mu.Unlock()
					if !ok {
						end = time.Time{}
					}
					bd = append(bd, light{start, end, refusals})
				}()
				select {
				case <-loadCtx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	if clock.Sleep(ctx, time.Until(from)) != nil {
		return result{}, ctx.Err()
	}
	sum0, n0, err := busy(ctx, s)
	if err != nil {
		return result{}, err
	}
	fmt.Fprintf(os.Stderr, "fairness: %s: measuring for %s\n", policy, st.measure)
	if clock.Sleep(ctx, time.Until(until)) != nil {
		return result{}, ctx.Err()
	}
	sum1, n1, err := busy(ctx, s)
	if err != nil {
		return result{}, err
	}
	var aAsync int
	if err := s.Query(ctx, `SELECT count(*) FROM jobs WHERE user_id = $1 AND state = 'COMPLETED'
		AND finished_at >= $2 AND finished_at < $3`, []any{&aAsync}, users[0].ID, from, until); err != nil {
		return result{}, fmt.Errorf("count A's async jobs: %w", err)
	}
	// The load goes on for drain, so that requests of the window finish;
	// one still waiting then counts with the wait it had so far.
	fmt.Fprintf(os.Stderr, "fairness: %s: letting the window's requests finish (%s)\n", policy, st.drain)
	if clock.Sleep(ctx, st.drain) != nil {
		return result{}, ctx.Err()
	}
	cut := time.Now()
	stopLoad()
	wg.Wait()

	r := result{policy: policy, window: until.Sub(from), slots: st.gpus * st.slots, busy: sum1 - sum0, aAsync: aAsync}
	r.service = time.Duration(st.service * float64(time.Second))
	if n1 > n0 {
		r.service = time.Duration((sum1 - sum0) / (n1 - n0) * float64(time.Second))
	}
	for _, t := range aDone {
		if !t.Before(from) && t.Before(until) {
			r.aSync++
		}
	}
	for _, l := range bd {
		if !l.end.IsZero() && !l.end.Before(from) && l.end.Before(until) {
			r.bdImages++
		}
		if l.start.Before(from) || !l.start.Before(until) {
			continue
		}
		end := l.end
		if end.IsZero() || end.After(cut) {
			end = cut
			r.bdUnfinished++
		}
		r.waits = append(r.waits, max(end.Sub(l.start)-r.service, 0))
		if len(l.refusals) > 0 {
			r.bdRefused++
			fmt.Fprintf(os.Stderr, "fairness: %s: a B–D request waited %s, refused first: %s\n", policy,
				end.Sub(l.start).Round(time.Millisecond), strings.Join(l.refusals, "; "))
		}
	}
	fmt.Fprintf(os.Stderr, "fairness: %s: done (%d B–D requests measured)\n", policy, len(r.waits))
	return r, nil
}

// generate sends one synchronous generation for u, retrying 503 and 429
// after Retry-After (at most a second) until it gets an image or ctx ends.
func generate(ctx context.Context, c *stack.Client, u stack.User) (start, end time.Time, refusals []string, ok bool) {
	start = time.Now()
	for ctx.Err() == nil {
		r := c.Do(ctx, stack.Request{Method: http.MethodPost, Path: "/images", Token: u.Token, Body: body(), ContentType: "application/json"})
		if r.OK() {
			return start, r.End, refusals, true
		}
		refusals = append(refusals, fmt.Sprintf("%d after %s: %.80s", r.Status, r.Took().Round(time.Millisecond), r.Body))
		wait := 250 * time.Millisecond
		if r.Status == http.StatusServiceUnavailable || r.Status == http.StatusTooManyRequests {
			if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err == nil {
				wait = min(time.Duration(s)*time.Second, time.Second)
			}
		}
		if clock.Sleep(ctx, wait) != nil {
			break
		}
	}
	return start, time.Time{}, refusals, false
}

var seeds atomic.Int64

// body is one 512×512, 25-step Text to Image sample (one work unit) with
// a fresh seed, so that no two requests are served from a stored image.
func body() []byte {
	seed := seeds.Add(1) + time.Now().UnixNano()%1_000_000*1000
	return []byte(fmt.Sprintf(`{"inference_mode":"Text to Image","model_id":%q,"prompt":"a frog wearing noggles",`+
		`"negative_prompt":"","samples":1,"steps":25,"seed":%d,"aspect_ratio":"512:512"}`, stack.Model, seed))
}

// busy sums gpusvc_generation_duration_seconds (sum and count) over every
// gpusvc: the slot-seconds spent generating so far, and how many.
func busy(ctx context.Context, s *stack.Stack) (sum, count float64, err error) {
	for _, g := range s.GPUs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.URL()+"/metrics", nil)
		if err != nil {
			return 0, 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, 0, fmt.Errorf("read %s metrics: %w", g.Addr, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			for _, m := range []struct {
				prefix string
				dst    *float64
			}{{"gpusvc_generation_duration_seconds_sum", &sum}, {"gpusvc_generation_duration_seconds_count", &count}} {
				if strings.HasPrefix(line, m.prefix) {
					f := strings.Fields(line)
					if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
						*m.dst += v
					}
				}
			}
		}
		resp.Body.Close()
	}
	return sum, count, nil
}

// report prints the side-by-side table and the targets.
func report(rs []result, st settings, dir string) int {
	var md, targets bytes.Buffer
	fmt.Fprintf(&md, "## Fairness: one heavy user against three light ones (make bench-fairness)\n\n")
	fmt.Fprintf(&md, "%d gpusvc × %d slots, built-in backend paced to %gs per image; user A: %d concurrent sync + %d async jobs; "+
		"B, C, D: one sync request each every %s; window %s after %s of load. Wait = latency − service time.\n\n",
		st.gpus, st.slots, st.service, st.flood, st.async, st.period, st.measure, st.warmup)
	fmt.Fprintf(&md, "| | %s |\n|---|%s\n", strings.Join(names(rs), " | "), strings.Repeat("---:|", len(rs)))
	row := func(name string, f func(r result) string) {
		cells := make([]string, len(rs))
		for i, r := range rs {
			cells[i] = f(r)
		}
		fmt.Fprintf(&md, "| %s | %s |\n", name, strings.Join(cells, " | "))
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	row("service time (mean slot hold)", func(r result) string { return secs(r.service) })
	row("B–D requests in the window (unfinished)", func(r result) string { return fmt.Sprintf("%d (%d)", len(r.waits), r.bdUnfinished) })
	row("B–D requests refused at least once", func(r result) string { return fmt.Sprint(r.bdRefused) })
	row("B–D p50 wait", func(r result) string { return secs(r.pct(0.5)) })
	row("B–D p99 wait", func(r result) string { return secs(r.pct(0.99)) })
	row("A throughput (sync + async)", func(r result) string {
		return fmt.Sprintf("%.2f img/s (%d + %d)", r.aRate(), r.aSync, r.aAsync)
	})
	row("capacity left by B–D", func(r result) string { return fmt.Sprintf("%.2f img/s", r.left()) })
	row("fleet utilisation", func(r result) string { return fmt.Sprintf("%.1f %%", 100*r.util()) })

	var fifo, fair *result
	for i := range rs {
		switch rs[i].policy {
		case "fifo":
			fifo = &rs[i]
		case "fair":
			fair = &rs[i]
		}
	}
	missed := false
	verdict := func(name, measured string, ok bool) {
		v := "met"
		if !ok {
			v, missed = "missed", true
		}
		fmt.Fprintf(&targets, "fairness|%s|%s|%s\n", name, measured, v)
	}
	if fair != nil {
		p99, limit := fair.pct(0.99), time.Duration(1.5*float64(fair.service))
		verdict("B–D p99 wait ≤ 1.5 × service time (fair)", fmt.Sprintf("%s (limit %s)", secs(p99), secs(limit)), len(fair.waits) > 0 && p99 <= limit)
		if fifo != nil {
			verdict("utilisation ≥ 95 % of FIFO's (fair)", fmt.Sprintf("%.1f %% vs %.1f %%", 100*fair.util(), 100*fifo.util()),
				fair.util() >= 0.95*fifo.util())
		}
		verdict("A's throughput ≥ 90 % of the capacity B–D leave (fair)",
			fmt.Sprintf("%.2f of %.2f img/s", fair.aRate(), fair.left()), fair.aRate() >= 0.9*fair.left())
	}
	fmt.Fprintf(&md, "\n| target | measured | verdict |\n|---|---|---|\n")
	for _, line := range strings.Split(strings.TrimSpace(targets.String()), "\n") {
		if f := strings.Split(line, "|"); len(f) == 4 {
			v := "PASS"
			if f[3] != "met" {
				v = "**FAIL**"
			}
			fmt.Fprintf(&md, "| %s | %s | %s |\n", f[1], f[2], v)
		}
	}
	fmt.Print(md.String())
	if dir != "" {
		for name, b := range map[string][]byte{"fairness.md": md.Bytes(), "fairness.targets": targets.Bytes()} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "fairness: %v\n", err)
				return 2
			}
		}
	}
	if missed {
		return 1
	}
	return 0
}

func names(rs []result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s (ADMISSION_POLICY=%s, JOB_FAIRNESS=%s)", strings.ToUpper(r.policy), r.policy, r.policy)
	}
	return out
}
