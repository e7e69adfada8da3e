// Package proctest runs a service binary (proxy, accountsvc, gpusvc) for the
// length of a test and reports the URL it listens on. The whole-stack tests
// in e2e/ and librarytest (a proxy in front of the library API) use it.
//
// This package is for tests only and must never be imported by production
// code.
package proctest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Start runs the service binary at path with exactly env (plus PATH, for
// ffmpeg) in a temporary working directory until tb ends, and returns the
// URL it listens on, read from its "http server listening" JSON log line
// (so env should hold HTTP_ADDR=127.0.0.1:0 and LOG_FORMAT=json, and a log
// level of info or lower). The process is killed at cleanup, and by the
// kernel if the test binary dies first (Linux); its output is replayed
// when tb has failed.
func Start(tb testing.TB, path string, env map[string]string) string {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, path)
	name := filepath.Base(path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = tb.TempDir()
	logs := newLogTail()
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	setParentDeathSignal(cmd)
	require.NoError(tb, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		cancel() // CommandContext kills the process
		<-exited
		if tb.Failed() {
			tb.Logf("%s log:\n%s", name, logs.String())
		}
	})
	select {
	case addr := <-logs.addr:
		return "http://" + addr
	case err := <-exited:
		exited <- err
		tb.Fatalf("%s exited before listening: %v\n%s", name, err, logs.String())
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s did not listen within 30s\n%s", name, logs.String())
	}
	return ""
}

// logTail keeps a process's output and reports the address of its first
// "http server listening" JSON log line on addr.
type logTail struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	addr    chan string
	found   bool
}

func newLogTail() *logTail { return &logTail{addr: make(chan string, 1)} }

// maxLog bounds the kept output.
const maxLog = 1 << 20

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() < maxLog {
		l.buf.Write(p)
	}
	if l.found {
		return len(p), nil
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := l.partial[:i]
		l.partial = l.partial[i+1:]
		var entry struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &entry) == nil && entry.Msg == "http server listening" && entry.Addr != "" {
			l.found = true
			l.partial = nil
			l.addr <- entry.Addr
			break
		}
	}
	if len(l.partial) > maxLog {
		l.partial = nil
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
