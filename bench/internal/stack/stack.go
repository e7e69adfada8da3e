// Package stack starts the whole Nouns AI stack for the chaos suite and the
// soak: the built binaries (proxy, accountsvc, gpusvc) on free loopback
// ports, in front of their own throwaway PostgreSQL and Redis under a
// temporary folder, and stops every process it started. It drives the
// services only from outside (HTTP, SQL, signals), like an operator, and
// never touches the machine's own data stores.
package stack

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Secrets of the throwaway stack (never used anywhere else).
const (
	Challenge  = "chaos-challenge-token"
	AdminToken = "chaos-admin-token"
	jwtSecret  = "chaos-jwt-secret-0123456789abcdef0123456789"
	database   = "nounsai"
)

// Config says what to start. Zero values take the defaults noted.
type Config struct {
	// BinDir holds the proxy, accountsvc and gpusvc binaries (make build).
	BinDir string
	// GPUs is the number of gpusvc instances registered at start (default 2).
	GPUs int
	// Env is added to every service's settings; ProxyEnv, AccountEnv and
	// GPUEnv to one kind's (they win over Env).
	Env, ProxyEnv, AccountEnv, GPUEnv map[string]string
	// Keep leaves the temporary folder (logs, data) in place after Close.
	Keep bool
}

// Service is one service process and its address.
type Service struct {
	*Proc
	// Addr is its host:port on 127.0.0.1.
	Addr string
	// Env is its complete environment.
	Env []string
}

// URL is http://Addr.
func (s *Service) URL() string { return "http://" + s.Addr }

// Stack is a running stack. Close stops it.
type Stack struct {
	// Dir is the temporary folder: logs, data, storage, outbox.
	Dir string
	// OutboxDir receives the emails (EMAIL_BACKEND=outbox).
	OutboxDir string
	// Postgres and Redis are the stack's own data stores.
	Postgres *Postgres
	Redis    *Redis
	// DatabaseURL is the stack's database.
	DatabaseURL string
	// Proxy, Account and GPUs are the services; GPUs grows with AddGPU.
	Proxy, Account *Service
	GPUs           []*Service

	cfg Config
}

// Start starts the stack and waits until the proxy is healthy with every
// gpusvc in its pool. On error everything started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.GPUs <= 0 {
		cfg.GPUs = 2
	}
	if cfg.BinDir, err = filepath.Abs(cfg.BinDir); err != nil {
		return nil, err
	}
	for _, b := range []string{"proxy", "accountsvc", "gpusvc"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return nil, fmt.Errorf("binary %s missing in %s (make build): %w", b, cfg.BinDir, err)
		}
	}
	dir, err := os.MkdirTemp("", "nounsai-stack-")
	if err != nil {
		return nil, err
	}
	// The postgres user must reach its data folder inside.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Stack{Dir: dir, OutboxDir: filepath.Join(dir, "outbox"), cfg: cfg}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, d := range []string{s.OutboxDir, filepath.Join(dir, "storage"), filepath.Join(dir, "discord")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	base := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LANG=C.UTF-8"}
	if s.Postgres, err = StartPostgres(ctx, filepath.Join(dir, "pg"), ports[0], base); err != nil {
		return nil, err
	}
	if s.Redis, err = StartRedis(ctx, filepath.Join(dir, "redis"), ports[1], base); err != nil {
		return nil, err
	}
	if err := s.exec(ctx, fmt.Sprintf(`CREATE DATABASE %s`, database), s.Postgres.URL("postgres")); err != nil {
		return nil, err
	}
	s.DatabaseURL = s.Postgres.URL(database)

	migrate := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, "accountsvc"), "migrate")
	migrate.Env = s.env(nil, nil)
	migrate.Dir = dir
	if out, err := migrate.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("accountsvc migrate: %w\n%s", err, out)
	}

	addrs, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	accountAddr := "127.0.0.1:" + strconv.Itoa(addrs[0])
	s.Account = s.service("accountsvc", "accountsvc", accountAddr, cfg.AccountEnv, map[string]string{
		"DEV_DISCORD_DIR": filepath.Join(dir, "discord"),
	})
	if err := s.Account.Start(); err != nil {
		return nil, err
	}
	for range cfg.GPUs {
		if _, err := s.AddGPU(ctx, true); err != nil {
			return nil, err
		}
	}
	if err := WaitHealthy(ctx, s.Account, 60*time.Second); err != nil {
		return nil, err
	}
	s.Proxy = s.service("proxy", "proxy", "127.0.0.1:"+strconv.Itoa(addrs[1]), cfg.ProxyEnv, map[string]string{
		"ACCOUNTSVC_URLS": s.Account.URL(),
	})
	if err := s.Proxy.Start(); err != nil {
		return nil, err
	}
	if err := WaitHealthy(ctx, s.Proxy, 60*time.Second); err != nil {
		return nil, err
	}
	for _, g := range s.GPUs {
		if err := s.WaitInPool(ctx, g, 60*time.Second); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// env is the environment of a service: the stack's settings, then Env,
// then kind, then own (later wins).
func (s *Stack) env(kind, own map[string]string) []string {
	m := map[string]string{
		"ENVIRONMENT":      "local",
		"DATABASE_URL":     s.DatabaseURL,
		"REDIS_URL":        s.Redis.URL(),
		"REDIS_PREFIX":     "chaos:",
		"JWT_SECRET":       jwtSecret,
		"CHALLENGE_TOKEN":  Challenge,
		"ADMIN_TOKEN":      AdminToken,
		"STORAGE_BACKEND":  "local",
		"STORAGE_DIR":      filepath.Join(s.Dir, "storage"),
		"OUTBOX_DIR":       s.OutboxDir,
		"EMAIL_BACKEND":    "outbox",
		"LOG_FORMAT":       "json",
		"LOG_LEVEL":        "info",
		"SHUTDOWN_TIMEOUT": "5s",
	}
	if s.DatabaseURL == "" {
		m["DATABASE_URL"] = s.Postgres.URL(database)
	}
	maps.Copy(m, s.cfg.Env)
	maps.Copy(m, kind)
	maps.Copy(m, own)
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.Dir}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// service prepares (does not start) a service process listening on addr.
func (s *Stack) service(name, bin, addr string, kind, own map[string]string) *Service {
	// METRICS_ADDR on port 0: the default (HTTP port + 1000) may be taken
	// on a busy machine; the stack reads only gpusvc's metrics, which are
	// on its own address.
	all := map[string]string{"HTTP_ADDR": addr, "APP_BASE_URL": "http://" + addr, "METRICS_ADDR": "127.0.0.1:0"}
	maps.Copy(all, own)
	env := s.env(kind, all)
	return &Service{
		Proc: NewProc(name, filepath.Join(s.Dir, name+".log"), filepath.Join(s.cfg.BinDir, bin), nil, env, s.Dir, nil),
		Addr: addr, Env: env,
	}
}

// AddGPU starts one more gpusvc on a free port and waits for its health;
// with register it also inserts its address into api_hosts.
func (s *Stack) AddGPU(ctx context.Context, register bool) (*Service, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("gpusvc-%d", len(s.GPUs)+1)
	g := s.service(name, "gpusvc", "127.0.0.1:"+strconv.Itoa(ports[0]), s.cfg.GPUEnv, nil)
	if err := g.Start(); err != nil {
		return nil, err
	}
	s.GPUs = append(s.GPUs, g)
	if err := WaitHealthy(ctx, g, 60*time.Second); err != nil {
		return nil, err
	}
	if register {
		if err := s.RegisterGPU(ctx, g); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// RegisterGPU inserts g's address into api_hosts (the operator's hot add).
func (s *Stack) RegisterGPU(ctx context.Context, g *Service) error {
	return s.exec(ctx, `INSERT INTO api_hosts (address) VALUES ($1) ON CONFLICT (address) DO NOTHING`, s.DatabaseURL, g.URL())
}

// exec runs one statement on url on a fresh connection.
func (s *Stack) exec(ctx context.Context, sql, url string, args ...any) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// TerminateBackends ends every server connection to the stack's database
// (pg_terminate_backend) from a fresh admin connection and returns how many
// it ended.
func (s *Stack) TerminateBackends(ctx context.Context) (int, error) {
	conn, err := pgx.Connect(ctx, s.Postgres.URL("postgres"))
	if err != nil {
		return 0, fmt.Errorf("connect postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, database).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("terminate backends: %w", err)
	}
	return n, nil
}

// Query runs a one-row query on the stack's database.
func (s *Stack) Query(ctx context.Context, sql string, dest []any, args ...any) error {
	conn, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql, args...).Scan(dest...)
}

// WaitInPool waits until the proxy lists g as a healthy GPU host
// (GET /admin/hosts).
func (s *Stack) WaitInPool(ctx context.Context, g *Service, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		ok, err := s.Healthy(ctx, g)
		if ok {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the proxy does not list %s as healthy after %s: %v", g.Name, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Processes lists every running process of the stack by name with its PID
// (the data stores included), for memory sampling.
func (s *Stack) Processes() map[string]int {
	out := map[string]int{}
	add := func(name string, pid int) {
		if pid > 0 {
			out[name] = pid
		}
	}
	if s.Postgres != nil {
		add("postgres", s.Postgres.PID())
	}
	if s.Redis != nil {
		add("redis", s.Redis.PID())
	}
	for _, svc := range append([]*Service{s.Proxy, s.Account}, s.GPUs...) {
		if svc != nil && svc.Running() {
			add(svc.Name, svc.PID())
		}
	}
	return out
}

// Close stops every process the stack started (services with SIGTERM,
// then the data stores) and removes its folder unless Config.Keep.
func (s *Stack) Close() {
	var svcs []*Service
	if s.Proxy != nil {
		svcs = append(svcs, s.Proxy)
	}
	svcs = append(svcs, s.GPUs...)
	if s.Account != nil {
		svcs = append(svcs, s.Account)
	}
	for _, svc := range svcs {
		_ = svc.Signal(syscall.SIGTERM)
	}
	for _, svc := range svcs {
		if !svc.Wait(8 * time.Second) {
			_ = svc.Kill()
		}
	}
	if s.Redis != nil {
		_ = s.Redis.Stop()
	}
	if s.Postgres != nil {
		_ = s.Postgres.Stop()
	}
	if !s.cfg.Keep {
		_ = os.RemoveAll(s.Dir)
	}
}

// FreePorts returns n distinct ports on 127.0.0.1 that were free a moment
// ago (listened on together, then released).
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// WaitHealthy waits until svc's GET /health answers 200, failing early when
// the process exits.
func WaitHealthy(ctx context.Context, svc *Service, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if Health(ctx, svc) {
			return nil
		}
		if !svc.Running() {
			return fmt.Errorf("%s exited before it was healthy (see %s)", svc.Name, svc.LogPath)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.Join(ctx.Err(), fmt.Errorf("%s not healthy after %s (see %s)", svc.Name, within, svc.LogPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Health reports whether svc's GET /health answers 200 within a second.
func Health(ctx context.Context, svc *Service) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, svc.URL()+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
