package stack

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a throwaway PostgreSQL server: its own data directory under
// the stack's folder, its own port on 127.0.0.1, trust authentication for
// user postgres, fsync off. It never touches another server.
type Postgres struct {
	// Port is its TCP port on 127.0.0.1.
	Port int
	proc *Proc
}

// pgBinDir finds the folder holding initdb and postgres: the newest
// /usr/lib/postgresql/*/bin (Debian), else the folder of initdb on PATH.
func pgBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	p, err := exec.LookPath("initdb")
	if err != nil {
		return "", fmt.Errorf("no PostgreSQL server binaries (initdb) found; install them (Debian: apt-get install postgresql)")
	}
	return filepath.Dir(p), nil
}

// pgCredential is who runs initdb and postgres: they refuse to run as root,
// so root runs them as the system user "postgres".
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the system user postgres (it runs the server): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// StartPostgres initialises a cluster under dir and starts it on port,
// waiting until it accepts connections. dir's parents must be traversable
// by the user postgres when we run as root.
func StartPostgres(ctx context.Context, dir string, port int, env []string) (*Postgres, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		for _, d := range []string{dir, data} {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, fmt.Errorf("chown %s: %w", d, err)
			}
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.Env = env
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-h", "127.0.0.1", "-k", dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning"}
	pg := &Postgres{Port: port, proc: NewProc("postgres", filepath.Join(dir, "postgres.log"),
		filepath.Join(bin, "postgres"), args, env, dir, cred)}
	if err := pg.proc.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, pg.URL("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			return pg, nil
		}
		if !pg.proc.Running() || time.Now().After(deadline) || ctx.Err() != nil {
			_ = pg.Stop()
			return nil, fmt.Errorf("postgres on port %d does not accept connections (see %s): %w", port, pg.proc.LogPath, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// URL is the connection URL of database db.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// PID is the postmaster's process id.
func (p *Postgres) PID() int { return p.proc.PID() }

// Stop shuts the server down (fast shutdown: SIGINT; immediate after 10 s).
func (p *Postgres) Stop() error {
	if err := p.proc.Signal(syscall.SIGINT); err != nil {
		return err
	}
	if p.proc.Wait(10 * time.Second) {
		return nil
	}
	return p.proc.Stop(syscall.SIGQUIT, 5*time.Second)
}

// Redis is a throwaway Redis server on its own port on 127.0.0.1, without
// persistence; it can be stopped and started again on the same port.
type Redis struct {
	// Port is its TCP port on 127.0.0.1.
	Port int
	proc *Proc
}

// StartRedis starts redis-server on port with its files under dir and waits
// until it answers.
func StartRedis(ctx context.Context, dir string, port int, env []string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found; install it (Debian: apt-get install redis-server)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--loglevel", "warning"}
	r := &Redis{Port: port, proc: NewProc("redis", filepath.Join(dir, "redis.log"), bin, args, env, dir, nil)}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// URL is the client URL (database 0).
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port) }

// PID is the server's process id.
func (r *Redis) PID() int { return r.proc.PID() }

// Start starts the server (again) and waits up to 10 s until it answers PING.
func (r *Redis) Start(ctx context.Context) error {
	if err := r.proc.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for !r.answers() {
		if !r.proc.Running() || time.Now().After(deadline) || ctx.Err() != nil {
			_ = r.Stop()
			return fmt.Errorf("redis on port %d does not answer (see %s)", r.Port, r.proc.LogPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// answers reports whether the server answers PING.
func (r *Redis) answers() bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.Port), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 5)
	n, _ := c.Read(buf)
	return string(buf[:n]) == "+PONG"
}

// Stop shuts the server down (SIGTERM; SIGKILL after 5 s).
func (r *Redis) Stop() error { return r.proc.Stop(syscall.SIGTERM, 5*time.Second) }
