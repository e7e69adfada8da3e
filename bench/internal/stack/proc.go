package stack

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is one child process that can be started again after it exits (a
// restart keeps its name, command line and log file). Its output is
// appended to its log file. The kernel kills it with SIGKILL if the program
// that started it dies without stopping it (Linux parent-death signal), so
// an interrupted run leaves no service behind. Proc is safe for concurrent
// use.
type Proc struct {
	// Name names the process in messages.
	Name string
	// LogPath is the file its stdout and stderr are appended to.
	LogPath string

	path string
	args []string
	env  []string
	dir  string
	cred *syscall.Credential

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has exited
}

// NewProc returns a process that is not started yet: path with args, exactly
// env, working directory dir, run as cred (nil: as ourselves).
func NewProc(name, logPath, path string, args, env []string, dir string, cred *syscall.Credential) *Proc {
	return &Proc{Name: name, LogPath: logPath, path: path, args: args, env: env, dir: dir, cred: cred}
}

// Start runs the process. It fails when the process is already running.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("start %s: already running", p.Name)
		}
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: p.cred}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// PID is the process id of the current run (0 when never started).
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the current run has not exited.
func (p *Proc) Running() bool {
	done := p.exited()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (p *Proc) exited() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Signal sends sig to the current run; it does nothing when the process is
// not running.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	return nil
}

// Wait waits up to d for the current run to exit and reports whether it did.
func (p *Proc) Wait(d time.Duration) bool {
	done := p.exited()
	if done == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Kill sends SIGKILL and waits (up to 10 s) until the process is gone.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if !p.Wait(10 * time.Second) {
		return fmt.Errorf("kill %s: still running 10 s after SIGKILL", p.Name)
	}
	return nil
}

// Stop sends sig (SIGTERM for the services) and, when the process has not
// exited after grace, SIGKILL; it returns once the process is gone.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) error {
	if err := p.Signal(sig); err != nil {
		return err
	}
	if p.Wait(grace) {
		return nil
	}
	return p.Kill()
}
