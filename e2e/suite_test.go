package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// libraryProxyEnv is librarytest.ProxyEnv, which this module cannot import
// (it is internal to accountsvc): the variable naming the proxy binary that
// librarytest puts in front of the library API.
const libraryProxyEnv = "LIBRARYTEST_PROXY"

// TestLibrarySuiteThroughProxy runs the library API's own end-to-end tests
// (accountsvc/internal/libraryapi) with the proxy binary in front of every
// librarytest.Env, so each of them also passes through the proxy. It runs
// them with `go test` in a child process, since they live in another
// package's test files.
func TestLibrarySuiteThroughProxy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	args := []string{"test", "-count=1"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/nounsai/sdserver/accountsvc/internal/libraryapi")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), libraryProxyEnv+"="+filepath.Join(binDir, "proxy"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "library tests through the proxy:\n%s", out)
	t.Logf("%s", out)
}
