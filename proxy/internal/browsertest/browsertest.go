// Package browsertest drives headless Debian chromium for the proxy's
// browser tests (the ops console, the API reference page): it starts the
// browser with a fresh profile and takes checked screenshots of the window.
//
// It is test support: only _test.go files import it. It must never start a
// server or know any page; the tests bring their own.
package browsertest

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// ChromiumPath is Debian's chromium, which `make test` installs
// (scripts/services.sh).
const ChromiumPath = "/usr/bin/chromium"

// New starts headless chromium with a fresh profile and returns a tab
// context bounded by timeout; everything is stopped at cleanup. Without
// chromium it fails the test when CI is set (CI installs it, so a missing
// browser there is a broken machine) and skips it, saying why, otherwise.
func New(tb testing.TB, timeout time.Duration) context.Context {
	tb.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s is missing under CI (%v): install Debian's chromium (apt-get install -y chromium; `make test` does)", ChromiumPath, err)
		}
		tb.Skipf("SKIP: %s is missing (%v) and CI is unset: install Debian's chromium (apt-get install -y chromium; `make test` does) to run this browser test", ChromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1600, 900),
		chromedp.UserDataDir(filepath.Join(tb.TempDir(), "chromium-profile")),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(tb.Logf))
	ctx, cancelTimeout := context.WithTimeout(tabCtx, timeout)
	tb.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	return ctx
}

// Screenshot takes a screenshot of the tab's window (1600×900, what a user
// sees where the page is scrolled to), checks that it is a real render (at least 600×300 pixels and more than five colours, not a
// blank canvas), writes it as name (e.g. "docs.png") in a temporary
// directory, logs and returns its path. When the environment variable
// keepDirEnv names a directory, a copy is kept there (the temporary one is
// removed when the test ends).
func Screenshot(tb testing.TB, ctx context.Context, name, keepDirEnv string) string {
	tb.Helper()
	// Only the window, never the full page: a full-page shot of a long page
	// (the API reference with every operation rendered is taller than
	// chromium's 16384-pixel texture limit) came back as one flat colour
	// on a loaded CI machine however long it was retried. A loaded machine
	// may still paint late: take shots until one is a real render or 15 s
	// have passed.
	var (
		shot    []byte
		img     image.Image
		colours int
	)
	for deadline := time.Now().Add(15 * time.Second); ; {
		var err error
		shot, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
		require.NoError(tb, err)
		img, err = png.Decode(bytes.NewReader(shot))
		require.NoError(tb, err)
		if colours = countColours(img); colours > 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	require.GreaterOrEqual(tb, img.Bounds().Dx(), 600)
	require.GreaterOrEqual(tb, img.Bounds().Dy(), 300)
	require.Greater(tb, colours, 5, "the screenshot is blank")
	path := filepath.Join(tb.TempDir(), name)
	require.NoError(tb, os.WriteFile(path, shot, 0o644))
	tb.Logf("screenshot: %s", path)
	if dir := os.Getenv(keepDirEnv); dir != "" {
		kept := filepath.Join(dir, name)
		require.NoError(tb, os.WriteFile(kept, shot, 0o644))
		tb.Logf("screenshot kept: %s", kept)
	}
	return path
}

// countColours counts the distinct colours of img on a 7-pixel grid.
func countColours(img image.Image) int {
	colours := map[color.Color]bool{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 7 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 7 {
			colours[img.At(x, y)] = true
		}
	}
	return len(colours)
}
