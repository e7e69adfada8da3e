package deploytest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// unitFiles lists the systemd units in deploy/systemd.
func unitFiles(tb testing.TB) []string {
	tb.Helper()
	files := append(filesUnder(tb, "deploy/systemd", ".service"), filesUnder(tb, "deploy/systemd", ".target")...)
	require.NotEmpty(tb, files)
	return files
}

// unitKeys returns key=value settings of a unit file by key (a key may
// repeat), ignoring sections.
func unitKeys(b []byte) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// TestSystemdUnitsHardened checks the hardening and ordering every service
// unit promises in docs/operations.md.
func TestSystemdUnitsHardened(t *testing.T) {
	t.Parallel()
	required := map[string]string{
		"NoNewPrivileges": "yes",
		"PrivateTmp":      "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"User":            "nounsai",
	}
	envDir := filepath.Join(deployDir, "systemd", "env")
	for _, f := range filesUnder(t, "deploy/systemd", ".service") {
		keys := unitKeys(readFile(t, f))
		for k, v := range required {
			require.Equal(t, []string{v}, keys[k], "%s %s", rel(f), k)
		}
		require.NotEmpty(t, keys["EnvironmentFile"], rel(f))
		for _, ef := range keys["EnvironmentFile"] {
			name := filepath.Base(strings.TrimPrefix(ef, "-"))
			name = strings.ReplaceAll(name, "%i", "0")
			_, err := os.Stat(filepath.Join(envDir, name))
			require.NoError(t, err, "%s reads %s: deploy/systemd/env needs its example", rel(f), ef)
		}
		exec := keys["ExecStart"]
		require.Len(t, exec, 1, rel(f))
		require.Regexp(t, `^/opt/nounsai/bin/(proxy|accountsvc|gpusvc)( migrate)?$`, exec[0], rel(f))
		if strings.HasSuffix(f, "nounsai-migrate.service") {
			require.Equal(t, []string{"oneshot"}, keys["Type"])
			continue
		}
		require.Equal(t, []string{"nounsai-migrate.service"}, keys["Requires"], "%s runs after the migrations", rel(f))
		require.Contains(t, keys["After"][0], "nounsai-migrate.service", rel(f))
		require.Equal(t, []string{"on-failure"}, keys["Restart"], rel(f))
		require.NotEmpty(t, keys["LimitNOFILE"], rel(f))
	}
	gpu := unitKeys(readFile(t, filepath.Join(deployDir, "systemd", "nounsai-gpusvc@.service")))
	require.Contains(t, gpu["Environment"], "CUDA_VISIBLE_DEVICES=%i")
	require.Contains(t, gpu["EnvironmentFile"], "/etc/nounsai/gpusvc@%i.env")
	stop, err := time.ParseDuration(gpu["TimeoutStopSec"][0])
	require.NoError(t, err)
	require.GreaterOrEqual(t, stop, 300*time.Second, "gpusvc needs time to finish generation")
}

// TestSystemdAnalyzeVerify runs `systemd-analyze verify` on the units, with
// ExecStart pointed at stand-in executables (verify checks that they exist).
// Any warning fails the test.
func TestSystemdAnalyzeVerify(t *testing.T) {
	t.Parallel()
	sa := lookPath("systemd-analyze")
	if sa == "" {
		t.Skip("systemd-analyze is not installed; TestSystemdUnitsHardened still checks the units")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	for _, svc := range services {
		require.NoError(t, os.WriteFile(filepath.Join(bin, svc), []byte("#!/bin/sh\n"), 0o755))
	}
	var args []string
	for _, f := range unitFiles(t) {
		b := bytes.ReplaceAll(readFile(t, f), []byte("/opt/nounsai/bin/"), []byte(bin+"/"))
		name := filepath.Base(f)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
		args = append(args, filepath.Join(dir, name))
		if strings.HasSuffix(name, "@.service") {
			// Verify an instance too, so that %i expands.
			inst := strings.Replace(name, "@.service", "@0.service", 1)
			require.NoError(t, os.WriteFile(filepath.Join(dir, inst), b, 0o644))
			args = append(args, filepath.Join(dir, inst))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sa, append([]string{"verify", "--man=no"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice")
	out, err := cmd.CombinedOutput()
	// Lines about units outside ours (e.g. a host's own dependencies that
	// are missing in a container) are not ours to fix.
	var ours []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && strings.Contains(line, "nounsai") {
			ours = append(ours, line)
		}
	}
	require.NoError(t, err, "systemd-analyze verify:\n%s", out)
	require.Empty(t, ours, "systemd-analyze verify warnings")
}

// TestSysusersConfig checks the sysusers.d file that creates the user the
// units run as.
func TestSysusersConfig(t *testing.T) {
	t.Parallel()
	b := readFile(t, filepath.Join(deployDir, "systemd", "nounsai.sysusers.conf"))
	require.Regexp(t, regexp.MustCompile(`(?m)^u nounsai - `), string(b))
}
