package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"sync"
	"time"
)

// runRate sends GET requests at a constant rate (open loop) with at most
// -conns in flight, for -duration. Latency runs from each request's
// scheduled time, so a stalled server shows in it (no coordinated omission).
func runRate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rate", flag.ContinueOnError)
	url := fs.String("url", "", "request URL")
	label := fs.String("label", "", "label of the run in the output")
	rate := fs.Float64("rate", 1000, "requests per second")
	dur := fs.Duration("duration", 10*time.Second, "run time")
	conns := fs.Int("conns", 64, "most requests in flight (connections)")
	headers := headerFlags{}
	fs.Var(headers, "H", `request header "Name: value" (repeatable)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *rate <= 0 || *conns < 1 {
		return fmt.Errorf("-url, -rate > 0 and -conns >= 1 are required")
	}
	u, err := neturl.Parse(*url)
	if err != nil || u.Scheme != "http" {
		return fmt.Errorf("-url must be an http:// URL")
	}
	// One prebuilt request, written on kept-alive connections and answered
	// with http.ReadResponse: far cheaper than http.Client, so that the
	// generator disturbs the machine as little as possible.
	var raw bytes.Buffer
	fmt.Fprintf(&raw, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: benchtool\r\n", u.RequestURI(), u.Host)
	for k, v := range headers {
		fmt.Fprintf(&raw, "%s: %s\r\n", k, v)
	}
	raw.WriteString("\r\n")
	reqBytes := raw.Bytes()
	clients := make([]*rawConn, *conns)
	for i := range clients {
		clients[i] = &rawConn{addr: u.Host, req: reqBytes}
		if r := clients[i].do(time.Now()); r.err != nil {
			return fmt.Errorf("warm-up request: %w", r.err)
		}
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()

	total := int(*rate * dur.Seconds())
	due := make(chan time.Time, total)
	results := make([]result, 0, total)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for at := range due {
				r := c.do(at)
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		})
	}
	interval := time.Duration(float64(time.Second) / *rate)
	start := time.Now()
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			break
		}
		due <- at
	}
	close(due)
	wg.Wait()
	return writeJSON(os.Stdout, summarize(*label, results, time.Since(start)))
}

// rawConn is one kept-alive HTTP/1.1 connection sending a fixed request.
type rawConn struct {
	addr string
	req  []byte
	conn net.Conn
	br   *bufio.Reader
}

// do sends the request once (dialing when needed) and reads the answer; the
// latency runs from scheduled.
func (c *rawConn) do(scheduled time.Time) result {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return result{err: err, latency: time.Since(scheduled)}
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return result{err: err, latency: time.Since(scheduled)}
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return result{err: err, latency: time.Since(scheduled)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	return result{status: resp.StatusCode, latency: time.Since(scheduled), err: err}
}

func (c *rawConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.br = nil, nil
	}
}
