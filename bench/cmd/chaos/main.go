// Command chaos is the fault-injection suite of `make chaos`: it starts the
// real stack (the built binaries, three gpusvc, its own throwaway
// PostgreSQL and Redis on free loopback ports; package stack), creates a
// few users, and runs five scenarios against the proxy, printing the
// measured figures of each:
//
//  1. kill -9 of a gpusvc under load: only requests in flight on it fail,
//     requests started 1 s later all succeed, and every user's balance
//     equals the grants minus the price of the delivered images within
//     60 s (the credit-hold sweeper, with short settings);
//  2. restart of that gpusvc: traffic reaches it within 3 s of its health;
//  3. pg_terminate_backend of every connection of the stack's database:
//     no 5xx on GET routes, writes recover within 3 s, and adding a host
//     with an INSERT into api_hosts still reaches the proxy;
//  4. Redis stopped for 10 s: login, generation and library reads keep
//     answering 2xx;
//  5. a 10 MB JSON body sent without Expect: 100-continue gets a 413 with a
//     JSON body (proxy, to accountsvc and to a GPU route, and accountsvc
//     directly).
//
// Every process it starts is stopped however it ends (a signal, a failure,
// a panic in a scenario); every loop is bounded in count and time. It exits
// 1 when a scenario fails and 2 when the stack cannot start.
//
// Usage: chaos [-bin DIR] [-only 1,3] [-keep]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nounsai/sdserver/bench/internal/stack"
)

// Settings of the stack under test, printed at the start: faster health
// checks than production (so that a scenario measures the service, not the
// probe interval) and a short credit-hold bound (so that a killed host's
// debits are swept within the suite's 60 s).
var (
	commonEnv = map[string]string{
		"PRICE_TXT2IMG":        "1",
		"SIGNUP_BONUS_CREDITS": strconv.Itoa(bonus),
		"RATE_LIMITS":          "off",
	}
	proxyEnv = map[string]string{
		// The proxy's own per-IP limit stays on (it uses Redis, so
		// scenario 4 exercises its fail-open) with a bound no client
		// here reaches.
		"RATE_LIMITS":     "on",
		"RATE_LIMIT_IP":   "1000000",
		"HEALTH_INTERVAL": "1s",
		"HEALTH_TIMEOUT":  "1s",
		"HEALTH_RISE":     "2",
		"HEALTH_FALL":     "2",
		"GPU_TIMEOUT":     "60s",
	}
	gpuEnv = map[string]string{
		// One slot and a short queue per host; every Text to Image
		// sample holds its slot for 1 s (simulated GPU time), so that
		// requests are in flight when a host dies.
		"GPU_SLOTS":          "1",
		"GPU_QUEUE":          "4",
		"GPU_BASE_SECONDS":   "1",
		"WORKER_CONCURRENCY": "1",
		// Credit holds (shared/credits): a charge neither settled nor
		// released within GPU_QUEUE_WAIT + GENERATION_TIMEOUT +
		// CHARGE_HOLD_MARGIN (30 s here) is refunded by the sweeper of
		// a live gpusvc, which runs every CHARGE_SWEEP_INTERVAL.
		"GPU_QUEUE_WAIT":        "10s",
		"GENERATION_TIMEOUT":    "15s",
		"CHARGE_HOLD_MARGIN":    "5s",
		"CHARGE_SWEEP_INTERVAL": "1s",
	}
)

// bonus is every user's signup grant.
const bonus = 1000

func main() {
	os.Exit(run())
}

func run() int {
	bin := flag.String("bin", "bin", "folder holding the proxy, accountsvc and gpusvc binaries")
	only := flag.String("only", "1,2,3,4,5", "comma-separated scenario numbers to run")
	keep := flag.Bool("keep", false, "keep the stack's temporary folder (logs, data) after the run")
	users := flag.Int("users", 6, "users (and concurrent generating clients)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The whole run is bounded; the scenarios together take about 3 minutes.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()

	begin := time.Now()
	fmt.Printf("chaos: starting the stack (3 gpusvc, own PostgreSQL and Redis)\n")
	s, err := stack.Start(ctx, stack.Config{BinDir: *bin, GPUs: 3, Env: commonEnv, ProxyEnv: proxyEnv, GPUEnv: gpuEnv, Keep: *keep})
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: the stack did not start: %v\n", err)
		return 2
	}
	defer func() {
		s.Close()
		if *keep {
			fmt.Printf("chaos: logs and data kept in %s\n", s.Dir)
		}
	}()
	fmt.Printf("chaos: stack up in %.1fs: proxy %s, accountsvc %s, gpusvc %s, postgres :%d, redis :%d (folder %s)\n",
		time.Since(begin).Seconds(), s.Proxy.Addr, s.Account.Addr, addrs(s.GPUs), s.Postgres.Port, s.Redis.Port, s.Dir)
	fmt.Printf("chaos: settings: %s\n", settings())

	r := &runner{s: s, c: stack.NewClient(s.Proxy.URL(), 32)}
	t := time.Now()
	for i := range *users {
		u, err := r.c.Signup(ctx, s.OutboxDir, fmt.Sprintf("chaos-%d-%d@example.com", i, time.Now().UnixNano()))
		if err != nil {
			fmt.Fprintf(os.Stderr, "chaos: signup: %v (logs in %s)\n", err, s.Dir)
			return 2
		}
		r.users = append(r.users, u)
	}
	fmt.Printf("chaos: %d users signed up, verified and logged in through the proxy (%.1fs)\n", len(r.users), time.Since(t).Seconds())

	scenarios := []scenario{
		{1, "kill -9 of a gpusvc under load", r.killUnderLoad},
		{2, "restart of the killed gpusvc", r.restart},
		{3, "pg_terminate_backend of every database connection", r.terminateBackends},
		{4, "Redis stopped for 10 s", r.redisDown},
		{5, "10 MB JSON body without Expect: 100-continue", r.oversizedBody},
	}
	var failed []string
	ran := 0
	for _, sc := range scenarios {
		if !slices.Contains(strings.Split(*only, ","), strconv.Itoa(sc.n)) {
			continue
		}
		ran++
		if ctx.Err() != nil {
			failed = append(failed, strconv.Itoa(sc.n))
			continue
		}
		fmt.Printf("\n=== scenario %d: %s\n", sc.n, sc.name)
		t := time.Now()
		rep := &report{}
		func() {
			defer func() {
				if p := recover(); p != nil {
					rep.fail("panic: %v", p)
				}
			}()
			sc.run(ctx, rep)
		}()
		verdict := "PASS"
		if len(rep.failures) > 0 {
			verdict = "FAIL"
			failed = append(failed, strconv.Itoa(sc.n))
			for _, f := range rep.failures {
				fmt.Printf("    FAILED: %s\n", f)
			}
		}
		fmt.Printf("--- %s scenario %d (%.1fs)\n", verdict, sc.n, time.Since(t).Seconds())
	}
	fmt.Printf("\nchaos: %d scenario(s), %d passed, %d failed", ran, ran-len(failed), len(failed))
	if len(failed) > 0 {
		fmt.Printf(" (%s)", strings.Join(failed, ", "))
		if !*keep {
			fmt.Printf("; CHAOS_ARGS=-keep keeps the services' logs")
		}
	}
	fmt.Printf("; %.0fs in all\n", time.Since(begin).Seconds())
	if ctx.Err() != nil {
		fmt.Printf("chaos: interrupted: %v\n", context.Cause(ctx))
	}
	if len(failed) > 0 {
		return 1
	}
	return 0
}

// scenario is one numbered fault.
type scenario struct {
	n    int
	name string
	run  func(context.Context, *report)
}

// report collects a scenario's outcome; the figures are printed as they
// are measured.
type report struct{ failures []string }

// printf prints one indented line of figures.
func (*report) printf(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }

// check records a failure unless ok.
func (r *report) check(ok bool, format string, args ...any) {
	if !ok {
		r.fail(format, args...)
	}
}

func (r *report) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// runner holds what the scenarios share.
type runner struct {
	s     *stack.Stack
	c     *stack.Client
	users []stack.User
	// victim is the gpusvc scenario 1 kills and scenario 2 restarts.
	victim *stack.Service
}

func addrs(svcs []*stack.Service) string {
	var out []string
	for _, s := range svcs {
		out = append(out, s.Addr)
	}
	return strings.Join(out, " ")
}

// settings lists the non-default settings of the stack under test.
func settings() string {
	var out []string
	for _, m := range []struct {
		who string
		env map[string]string
	}{{"all", commonEnv}, {"proxy", proxyEnv}, {"gpusvc", gpuEnv}} {
		keys := make([]string, 0, len(m.env))
		for k := range m.env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, k+"="+m.env[k])
		}
		out = append(out, m.who+": "+strings.Join(kv, " "))
	}
	return strings.Join(out, "; ")
}
