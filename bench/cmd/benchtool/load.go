package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// seqFlags registers the flags that define an arrival sequence.
func seqFlags(fs *flag.FlagSet) (*sequence, *string) {
	s := &sequence{}
	fs.IntVar(&s.n, "n", 300, "jobs")
	fs.Float64Var(&s.load, "load", 0.8, "offered load as a fraction of the fleet's capacity")
	fs.Float64Var(&s.base, "base", 0.1, "seconds per work unit at speed 1 (gpusvc GPU_BASE_SECONDS)")
	fs.Uint64Var(&s.seed, "seed", 1, "seed of the arrival sequence")
	speeds := fs.String("speeds", "1,1,0.5,0.25", "relative speeds of the hosts (gpusvc GPU_SPEED)")
	return s, speeds
}

// runLoad drives POST /images at url with the open-loop Poisson sequence:
// every job is sent at its arrival time whatever the earlier ones are doing
// (one connection per outstanding job), and its latency is from its
// arrival time to the end of the answer.
func runLoad(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	seq, speeds := seqFlags(fs)
	url := fs.String("url", "", "POST /images URL, e.g. http://127.0.0.1:8080/images")
	label := fs.String("label", "", "label of the run in the output")
	token := fs.String("challenge-token", "dev-challenge-token", "challenge-token header")
	auth := fs.String("authorization", "", "Authorization header (empty: anonymous)")
	timeout := fs.Duration("timeout", 10*time.Minute, "bound of one request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if seq.speeds, err = parseSpeeds(*speeds); err != nil {
		return err
	}
	if *url == "" {
		return fmt.Errorf("-url is required")
	}
	client := &http.Client{
		Timeout:   *timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute},
	}
	jobs := seq.jobs()
	results := make([]result, len(jobs))
	var wg sync.WaitGroup
	start := time.Now()
	for i, j := range jobs {
		if d := time.Until(start.Add(j.at)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		wg.Go(func() {
			results[i] = send(ctx, client, http.MethodPost, *url, j.body(), map[string]string{
				"challenge-token": *token, "Authorization": *auth, "Content-Type": "application/json",
			}, start.Add(j.at))
		})
	}
	wg.Wait()
	s := summarize(*label, results, time.Since(start))
	fmt.Fprintf(os.Stderr, "benchtool load %s: rate %.2f jobs/s, %d sent, %d ok, %d rejected, %d failed\n",
		*label, seq.rate(), s.Sent, s.OK, s.Rejected, s.Failed)
	return writeJSON(os.Stdout, s)
}

// send makes one request and measures from scheduled (the intended send
// time) to the end of the answer's body.
func send(ctx context.Context, c *http.Client, method, url string, body []byte, headers map[string]string, scheduled time.Time) result {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return result{err: err}
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err, latency: time.Since(scheduled)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return result{status: resp.StatusCode, latency: time.Since(scheduled), err: err}
}
