package dbtest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a throwaway redis-server of one test, on a spare loopback
// port, for fault tests that stop Redis. It is never the machine's shared
// Redis: stopping it harms nobody else.
type RedisServer struct {
	tb   testing.TB
	dir  string
	port int

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartRedisServer starts redis-server (from PATH) without persistence on
// a free port under a temporary directory; it is stopped when the test
// ends.
func StartRedisServer(tb testing.TB) *RedisServer {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("dbtest: redis-server is not installed: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("dbtest: find a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	s := &RedisServer{tb: tb, dir: tb.TempDir(), port: port}
	s.start(bin)
	tb.Cleanup(s.Stop)
	return s
}

// URL returns the server's redis:// URL.
func (s *RedisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

// Addr returns host:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Start starts the server again after Stop, on the same port.
func (s *RedisServer) Start() {
	s.tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.tb.Fatalf("dbtest: %v", err)
	}
	s.start(bin)
}

func (s *RedisServer) start(bin string) {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("dbtest: start redis-server: %v", err)
	}
	s.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("dbtest: redis-server on port %d did not answer: %v (log in %s)", s.port, err, s.dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (as a crash or an operator's stop would) and waits
// until it has exited. Stopping a stopped server does nothing.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
