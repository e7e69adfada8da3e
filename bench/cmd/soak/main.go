// Command soak drives mixed traffic through the proxy of a real stack (the
// built binaries, two gpusvc, their own throwaway PostgreSQL and Redis;
// package stack) for a long time and reports: the errors (must be 0), p50
// and p99 latency per route, and the resident memory of every process at
// the start (after a warm-up) and at the end (flat within 20 %).
//
// Each client loops over a weighted mix: logins (10 %), Text to Image
// generations (30 %, 0.2 s of simulated GPU time each), library reads
// (45 %: credits, images, audios, transactions) and image uploads (15 %,
// a 64×64 PNG), with a short pause between requests so that the run
// measures a steady state, not a saturated machine.
//
// It prints Markdown and, with -results DIR, writes DIR/soak.md,
// DIR/soak.rss and DIR/soak.targets (the fragments bench/run.sh assembles
// into bench/RESULTS.md). It exits 1 when a target is missed.
//
// Usage: soak [-bin DIR] [-duration 10m] [-clients 8] [-results DIR]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"image"
	"image/png"
	"maps"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nounsai/sdserver/bench/internal/stack"
)

func main() {
	os.Exit(run())
}

// route is one kind of request of the mix and its weight (out of 100).
type route struct {
	name   string
	weight int
}

var mix = []route{
	{"POST /login", 10},
	{"POST /images", 30},
	{"GET /users/<id>/credits", 12},
	{"GET /users/<id>/images", 12},
	{"GET /users/<id>/audios", 11},
	{"GET /users/<id>/transactions", 10},
	{"POST /user-images", 15},
}

func run() int {
	bin := flag.String("bin", "bin", "folder holding the proxy, accountsvc and gpusvc binaries")
	duration := flag.Duration("duration", 10*time.Minute, "measured duration (after the warm-up)")
	warmup := flag.Duration("warmup", 30*time.Second, "traffic before the start figures are taken")
	clients := flag.Int("clients", 8, "concurrent clients (one user each)")
	pause := flag.Duration("pause", 100*time.Millisecond, "pause of each client between its requests")
	results := flag.String("results", "", "folder for soak.md, soak.rss and soak.targets (bench/run.sh fragments)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *warmup+*duration+5*time.Minute)
	defer cancel()

	fmt.Fprintf(os.Stderr, "soak: starting the stack\n")
	s, err := stack.Start(ctx, stack.Config{
		BinDir: *bin, GPUs: 2,
		Env: map[string]string{"RATE_LIMITS": "off", "SIGNUP_BONUS_CREDITS": "1000000", "LOG_LEVEL": "warn"},
		// Simulated GPU time per image; no CPU spent on it.
		GPUEnv: map[string]string{"GPU_BASE_SECONDS": "0.2", "GPU_SLOTS": "2", "GPU_QUEUE": "16"},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: the stack did not start: %v\n", err)
		return 2
	}
	defer s.Close()
	c := stack.NewClient(s.Proxy.URL(), *clients*2)
	users := make([]stack.User, 0, *clients)
	for i := range *clients {
		u, err := c.Signup(ctx, s.OutboxDir, fmt.Sprintf("soak-%d-%d@example.com", i, time.Now().UnixNano()))
		if err != nil {
			fmt.Fprintf(os.Stderr, "soak: %v\n", err)
			return 2
		}
		users = append(users, u)
	}

	rec := &recorder{lat: map[string][]time.Duration{}, errs: map[string]int{}}
	var wg sync.WaitGroup
	measureFrom := make(chan struct{})
	loadCtx, stopLoad := context.WithCancel(ctx)
	for i := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client(loadCtx, c, users[i], *pause, rec, measureFrom)
		}()
	}
	fmt.Fprintf(os.Stderr, "soak: %d clients, warm-up %s\n", *clients, *warmup)
	sleepCtx(ctx, *warmup)
	begin := time.Now()
	startMem := sampleMemory(s)
	close(measureFrom)
	fmt.Fprintf(os.Stderr, "soak: measuring for %s\n", *duration)
	peak := maps.Clone(startMem)
	for end := begin.Add(*duration); time.Now().Before(end) && ctx.Err() == nil; {
		sleepCtx(ctx, min(10*time.Second, time.Until(end)))
		for name, v := range sampleMemory(s) {
			p := peak[name]
			peak[name] = memory{rss: max(p.rss, v.rss), own: max(p.own, v.own)}
		}
		done := time.Since(begin).Round(time.Second)
		if done%time.Minute < 10*time.Second {
			fmt.Fprintf(os.Stderr, "soak: %s, %d requests, %d errors\n", done, rec.total(), rec.errors())
		}
	}
	endMem := sampleMemory(s)
	took := time.Since(begin)
	stopLoad()
	wg.Wait()
	if ctx.Err() != nil {
		fmt.Fprintf(os.Stderr, "soak: interrupted after %s\n", took.Round(time.Second))
	}
	return report(rec, startMem, endMem, peak, took, *clients, *results)
}

// client sends the mix until ctx ends; it records only after measureFrom
// is closed.
func client(ctx context.Context, c *stack.Client, u stack.User, pause time.Duration, rec *recorder, measureFrom <-chan struct{}) {
	total := 0
	for _, r := range mix {
		total += r.weight
	}
	// Bounded: at most one request per millisecond of the longest run.
	for range 10_000_000 {
		if ctx.Err() != nil {
			return
		}
		pick := rand.IntN(total)
		var rt route
		for _, r := range mix {
			if pick < r.weight {
				rt = r
				break
			}
			pick -= r.weight
		}
		var resp stack.Response
		switch rt.name {
		case "POST /login":
			resp = c.Login(ctx, u.Email, u.Password)
		case "POST /images":
			resp = c.Generate(ctx, u)
		case "POST /user-images":
			resp = c.Upload(ctx, u, "soak.png", randomPNG())
		default:
			path := strings.Replace(strings.TrimPrefix(rt.name, "GET "), "<id>", fmt.Sprint(u.ID), 1)
			resp = c.Do(ctx, stack.Request{Method: "GET", Path: path, Token: u.Token})
		}
		if ctx.Err() != nil {
			return // cut short by the end of the run: not a result
		}
		select {
		case <-measureFrom:
			rec.add(rt.name, resp)
		default:
		}
		sleepCtx(ctx, pause)
	}
}

// recorder keeps latencies and errors per route; safe for concurrent use.
type recorder struct {
	mu       sync.Mutex
	lat      map[string][]time.Duration
	errs     map[string]int
	examples []string
}

func (r *recorder) add(name string, resp stack.Response) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat[name] = append(r.lat[name], resp.Took())
	if !resp.OK() {
		r.errs[name]++
		if len(r.examples) < 10 {
			r.examples = append(r.examples, fmt.Sprintf("%s: %s", name, resp))
		}
	}
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lat {
		n += len(l)
	}
	return n
}

func (r *recorder) errors() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.errs {
		n += e
	}
	return n
}

// memory is one sample of a process's memory in bytes: rss is VmRSS, own
// its footprint without shared memory (stack.Footprint).
type memory struct{ rss, own int64 }

// sampleMemory reads the memory of every process of the stack.
func sampleMemory(s *stack.Stack) map[string]memory {
	out := map[string]memory{}
	for name, pid := range s.Processes() {
		rss, err := stack.RSS(pid)
		if err != nil {
			continue
		}
		own, err := stack.Footprint(pid)
		if err != nil {
			continue
		}
		out[name] = memory{rss: rss, own: own}
	}
	return out
}

// report prints (and with dir, writes) the results and returns the exit code.
func report(rec *recorder, start, end, peak map[string]memory, took time.Duration, clients int, dir string) int {
	var md, rss, targets bytes.Buffer
	missed := false
	target := func(name, measured string, met bool) {
		verdict := "met"
		if !met {
			verdict, missed = "missed", true
		}
		fmt.Fprintf(&targets, "soak|%s|%s|%s\n", name, measured, verdict)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&md, "## Soak: mixed traffic through the proxy for %s\n\n", took.Round(time.Second))
	fmt.Fprintf(&md, "`make bench-soak` (bench/cmd/soak): the built binaries, 2 gpusvc (0.2 s simulated GPU time per image), their own\n"+
		"PostgreSQL and Redis; %d clients, each looping over logins 10 %%, generations 30 %%, library reads 45 %%, uploads 15 %%\n"+
		"with 100 ms between requests, after a warm-up. Load average at the end: %s (the machine is shared: absolute\n"+
		"latencies are noisy).\n\n", clients, strings.Join(strings.Fields(string(load))[:3], " "))
	md.WriteString("| route | requests | errors | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|\n")
	names := make([]string, 0, len(rec.lat))
	for n := range rec.lat {
		names = append(names, n)
	}
	slices.Sort(names)
	totalReq, totalErr := 0, 0
	for _, n := range names {
		l := rec.lat[n]
		slices.Sort(l)
		totalReq += len(l)
		totalErr += rec.errs[n]
		fmt.Fprintf(&md, "| %s | %d | %d | %.1f | %.1f |\n", n, len(l), rec.errs[n], ms(pct(l, 50)), ms(pct(l, 99)))
	}
	fmt.Fprintf(&md, "| all | %d | %d | | |\n\n", totalReq, totalErr)
	for _, e := range rec.examples {
		fmt.Fprintf(&md, "- error: %s\n", e)
	}
	if len(rec.examples) > 0 {
		md.WriteString("\n")
	}
	target("errors", fmt.Sprintf("%d of %d requests", totalErr, totalReq), totalErr == 0 && totalReq > 0)

	md.WriteString("| process | RSS MB at start | at end | peak | end / start | footprint MB at start | at end | peak | end / start |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	procs := make([]string, 0, len(start))
	for n := range start {
		procs = append(procs, n)
	}
	slices.Sort(procs)
	worstRSS, worstRSSName, worst, worstName := 0.0, "", 0.0, ""
	for _, n := range procs {
		s, e, p := start[n], end[n], peak[n]
		rssRatio, ownRatio := float64(e.rss)/float64(s.rss), float64(e.own)/float64(s.own)
		fmt.Fprintf(&md, "| %s | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f | %.1f | %.2f |\n",
			n, mb(s.rss), mb(e.rss), mb(p.rss), rssRatio, mb(s.own), mb(e.own), mb(p.own), ownRatio)
		fmt.Fprintf(&rss, "%s|soak start|%.1f\n%s|soak end|%.1f\n", n, mb(s.rss), n, mb(e.rss))
		if rssRatio > worstRSS {
			worstRSS, worstRSSName = rssRatio, n
		}
		if ownRatio > worst {
			worst, worstName = ownRatio, n
		}
	}
	md.WriteString("\nRSS: VmRSS of each process (PostgreSQL: the postmaster and its backends), start = after the warm-up.\n" +
		"Footprint: the same processes' Pss minus Pss_Shmem (/proc/<pid>/smaps_rollup): memory each holds on its own, without\n" +
		"PostgreSQL's shared buffers, which VmRSS counts again in every backend that has touched them.\n")
	target("footprint end / start, worst process (≤ 1.20)", fmt.Sprintf("%.2f (%s)", worst, worstName), worst <= 1.2 && worst > 0)
	fmt.Fprintf(&targets, "soak|RSS end / start, worst process (the footprint is the target)|%.2f (%s)|shown\n", worstRSS, worstRSSName)

	os.Stdout.Write(md.Bytes())
	fmt.Printf("\ntargets:\n%s", targets.String())
	if dir != "" {
		for name, b := range map[string][]byte{"soak.md": md.Bytes(), "soak.rss": rss.Bytes(), "soak.targets": targets.Bytes()} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "soak: %v\n", err)
				return 1
			}
		}
	}
	if missed {
		return 1
	}
	return 0
}

// pct is the p-th percentile of sorted durations (nearest rank).
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mb(b int64) float64         { return float64(b) / (1 << 20) }

// randomPNG is a 64×64 PNG of random pixels (unique, so each upload is a
// new library row).
func randomPNG() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for p := 0; p < len(img.Pix); p += 4 {
		img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = byte(rand.IntN(256)), byte(rand.IntN(256)), byte(rand.IntN(256)), 255
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
