package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apispec/apispectest"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/proctest"
)

// Secrets of the test stack.
const (
	challenge  = "e2e-challenge-token"
	jwtSecret  = "e2e-jwt-secret-0123456789abcdef"
	adminToken = "e2e-admin-token"
)

// binDir holds the proxy, accountsvc and gpusvc binaries, built once by TestMain. It is
// the one package-level variable: TestMain has no testing.TB to pass it
// down with.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "nounsai-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// buildBinaries builds the proxy, accountsvc and gpusvc into dir, from the workspace
// root (the go.work makes the other modules' main packages buildable).
func buildBinaries(dir string) error {
	root, err := workspaceRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator),
		"github.com/nounsai/sdserver/proxy/cmd/proxy", "github.com/nounsai/sdserver/accountsvc/cmd/accountsvc",
		"github.com/nounsai/sdserver/gpusvc/cmd/gpusvc")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build the service binaries: %w\n%s", err, out)
	}
	return nil
}

// workspaceRoot walks up from the working directory to the folder holding
// go.work.
func workspaceRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory")
		}
		dir = parent
	}
}

// stack is accountsvc, one gpusvc and the proxy in front of
// both, sharing a database, a Redis prefix and a storage folder.
type stack struct {
	// ProxyURL is the public entry; AccountURL and GPUURL the services
	// behind it, for the direct runs.
	ProxyURL, AccountURL, GPUURL string
	// Pool is a pool on the stack's database.
	Pool *pgxpool.Pool
	// StorageDir is the local media storage every service writes to.
	StorageDir string
	// OutboxDir receives accountsvc's emails.
	OutboxDir string
	client    *http.Client
}

// newStack starts a stack that stops when tb ends.
func newStack(tb testing.TB) *stack {
	tb.Helper()
	return newStackWith(tb, nil)
}

// newStackWith is newStack with settings overridden for every service (e.g.
// REDIS_URL of a throwaway Redis a test stops).
func newStackWith(tb testing.TB, overrides map[string]string) *stack {
	tb.Helper()
	require.NotEmpty(tb, binDir, "TestMain builds the binaries")
	dbURL := dbtest.NewURL(tb)
	_, prefix := dbtest.Redis(tb)
	redisURL := dbtest.RedisURL()
	// Every request of the suite goes through the contract validator:
	// an exchange api/openapi.yaml does not describe fails the test.
	s := &stack{StorageDir: tb.TempDir(), OutboxDir: tb.TempDir(),
		client: &http.Client{Timeout: 90 * time.Second, Transport: apispectest.NewValidator(tb, nil)}}
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	s.Pool = pool

	// The settings every service reads (shared/config.LoadCommon,
	// storage.LoadConfig, email.LoadConfig, jobs.LoadConfig).
	common := map[string]string{
		"ENVIRONMENT":      "local",
		"DATABASE_URL":     dbURL,
		"REDIS_URL":        redisURL,
		"REDIS_PREFIX":     prefix,
		"JWT_SECRET":       jwtSecret,
		"CHALLENGE_TOKEN":  challenge,
		"ADMIN_TOKEN":      adminToken,
		"APP_BASE_URL":     "http://app.test",
		"STORAGE_BACKEND":  "local",
		"STORAGE_DIR":      s.StorageDir,
		"OUTBOX_DIR":       s.OutboxDir,
		"EMAIL_BACKEND":    "outbox",
		"RATE_LIMITS":      "off",
		"LOG_FORMAT":       "json",
		"LOG_LEVEL":        "info",
		"SHUTDOWN_TIMEOUT": "2s",
		"AUDIO_DURATION":   "2",
		"DEV_DISCORD_DIR":  tb.TempDir(),
	}
	for k, v := range overrides {
		common[k] = v
	}
	with := func(extra map[string]string) map[string]string {
		out := make(map[string]string, len(common)+len(extra))
		for k, v := range common {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}

	s.AccountURL = proctest.Start(tb, filepath.Join(binDir, "accountsvc"), with(map[string]string{"HTTP_ADDR": "127.0.0.1:0"}))
	s.waitOK(tb, s.AccountURL+"/health")
	s.GPUURL = proctest.Start(tb, filepath.Join(binDir, "gpusvc"), with(map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "GPU_SLOTS": "1", "GPU_QUEUE": "8", "WORKER_CONCURRENCY": "1",
	}))
	s.waitOK(tb, s.GPUURL+"/health")
	_, err = pool.Exec(context.Background(), `INSERT INTO api_hosts (address) VALUES ($1)`, s.GPUURL)
	require.NoError(tb, err)
	s.ProxyURL = proctest.Start(tb, filepath.Join(binDir, "proxy"), with(map[string]string{
		"HTTP_ADDR":       "127.0.0.1:0",
		"ACCOUNTSVC_URLS": s.AccountURL,
		"HEALTH_INTERVAL": "250ms",
		"HEALTH_RISE":     "1",
		"GPU_TIMEOUT":     "90s",
	}))
	s.waitHealthy(tb)
	return s
}

// waitOK polls url until it answers 200.
func (s *stack) waitOK(tb testing.TB, url string) {
	tb.Helper()
	var last string
	require.Eventually(tb, func() bool {
		resp, err := s.client.Get(url)
		if err != nil {
			last = err.Error()
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "GET %s: %s", url, last)
}

// hostStatus is the part of a /admin/hosts entry the harness reads.
type hostStatus struct {
	Address string    `json:"address"`
	State   string    `json:"state"`
	Healthy bool      `json:"healthy"`
	Check   time.Time `json:"last_check"`
}

// adminHosts returns the proxy's view of its upstreams.
func (s *stack) adminHosts(tb testing.TB) (gpu, account []hostStatus) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, s.ProxyURL+"/admin/hosts", nil)
	require.NoError(tb, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := s.client.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	require.Equal(tb, http.StatusOK, resp.StatusCode, "%s", body)
	var out struct {
		GPU     []hostStatus `json:"gpu"`
		Account []hostStatus `json:"account"`
	}
	require.NoError(tb, json.Unmarshal(body, &out), "%s", body)
	return out.GPU, out.Account
}

// waitHealthy waits until the proxy answers /health and has checked both
// upstreams and found them healthy.
func (s *stack) waitHealthy(tb testing.TB) {
	tb.Helper()
	s.waitOK(tb, s.ProxyURL+"/health")
	checked := func(hs []hostStatus, addr string) bool {
		for _, h := range hs {
			if strings.TrimRight(h.Address, "/") == addr && h.Healthy && h.State == "up" && !h.Check.IsZero() {
				return true
			}
		}
		return false
	}
	var gpu, account []hostStatus
	require.Eventually(tb, func() bool {
		gpu, account = s.adminHosts(tb)
		return checked(gpu, s.GPUURL) && checked(account, s.AccountURL)
	}, 30*time.Second, 50*time.Millisecond, "upstreams never healthy: gpu %+v account %+v", gpu, account)
}
