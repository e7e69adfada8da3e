package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags map[string]string

func (h headerFlags) String() string { return fmt.Sprint(map[string]string(h)) }

// Set implements flag.Value.
func (h headerFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok {
		return fmt.Errorf("want \"Name: value\", got %q", v)
	}
	h[strings.TrimSpace(k)] = strings.TrimSpace(val)
	return nil
}

// runClosed runs a closed-loop load: c workers each send the next request
// as soon as the previous one is answered, until n requests or the duration
// is over. It is used where the issue asks for per-request latency and
// throughput of heavy requests (generation, login, uploads).
func runClosed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("closed", flag.ContinueOnError)
	url := fs.String("url", "", "request URL")
	method := fs.String("method", http.MethodGet, "HTTP method")
	label := fs.String("label", "", "label of the run in the output")
	conc := fs.Int("c", 1, "concurrent workers")
	n := fs.Int("n", 0, "total requests (0: until -duration)")
	dur := fs.Duration("duration", 10*time.Second, "run time when -n is 0")
	warmup := fs.Int("warmup", 0, "requests sent (and not counted) before the measurement")
	bodyStr := fs.String("body", "", "request body; {{n}} in it becomes the request's sequence number")
	bodySize := fs.Int("body-size", 0, "send a random body of this many bytes instead")
	basic := fs.String("basic", "", "user:password for HTTP basic auth")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound of one request")
	headers := headerFlags{}
	fs.Var(headers, "H", `request header "Name: value" (repeatable)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *conc < 1 {
		return fmt.Errorf("-url and -c >= 1 are required")
	}
	var body []byte
	switch {
	case *bodySize > 0:
		body = make([]byte, *bodySize)
		_, _ = rand.Read(body)
	case *bodyStr != "":
		body = []byte(*bodyStr)
	}
	if *basic != "" {
		headers["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(*basic))
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{MaxIdleConnsPerHost: *conc + 8}}
	var (
		mu      sync.Mutex
		results []result
		issued  atomic.Int64
		seq     atomic.Int64
		wg      sync.WaitGroup
	)
	templated := bytes.Contains(body, []byte("{{n}}"))
	bodyFor := func() []byte {
		if !templated {
			return body
		}
		return bytes.ReplaceAll(body, []byte("{{n}}"), strconv.AppendInt(nil, seq.Add(1), 10))
	}
	for range *warmup {
		if r := send(ctx, client, *method, *url, bodyFor(), headers, time.Now()); r.err != nil {
			return fmt.Errorf("warm-up request: %w", r.err)
		}
	}
	start := time.Now()
	deadline := start.Add(*dur)
	for range *conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				if *n > 0 {
					if issued.Add(1) > int64(*n) {
						return
					}
				} else if time.Now().After(deadline) {
					return
				}
				r := send(ctx, client, *method, *url, bodyFor(), headers, time.Now())
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return writeJSON(os.Stdout, summarize(*label, results, time.Since(start)))
}
