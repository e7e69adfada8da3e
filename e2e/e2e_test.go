package e2e_test

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEndToEnd starts one stack and runs every scenario on it in parallel;
// one stack keeps the package fast on a small machine, and the scenarios
// stay independent because each uses its own users.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	for _, sc := range []struct {
		name string
		run  func(*testing.T, *stack)
	}{
		{"legacy account flow", testLegacyAccountFlow},
		{"images", testImages},
		{"audio", testAudio},
		{"links", testLinks},
		{"videos", testVideos},
		{"video projects", testVideoProjects},
		{"text to image", testTextToImage},
		{"refresh hosts", testRefreshHosts},
		{"new API", testNewAPI},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, s)
		})
	}
}

// pngOf returns a w×h PNG; seed makes different images differ.
func pngOf(tb testing.TB, w, h int, seed byte) []byte {
	tb.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{byte(x) + seed, byte(y), seed, 255})
		}
	}
	var buf bytes.Buffer
	require.NoError(tb, png.Encode(&buf, img))
	return buf.Bytes()
}

// decodePNG decodes a PNG or fails.
func decodePNG(tb testing.TB, data []byte) image.Image {
	tb.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	require.NoError(tb, err)
	return img
}

// mp3Bytes is the start of an MP3 file (an ID3 tag and a frame header);
// accountsvc only sniffs audio uploads.
func mp3Bytes(n int) []byte {
	b := append([]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), 0xFF, 0xFB, 0x90, 0x64)
	return append(b, bytes.Repeat([]byte{0x55}, n)...)
}

// tone makes a real MP3 of a sine tone with ffmpeg, for the jobs that
// decode their audio.
func tone(tb testing.TB, seconds string, freq int) []byte {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "tone.mp3")
	b, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
		fmt.Sprintf("sine=frequency=%d:duration=%s", freq, seconds), "-c:a", "libmp3lame", "-b:a", "32k", out).CombinedOutput()
	require.NoError(tb, err, "ffmpeg must be installed: %s", b)
	data, err := os.ReadFile(out)
	require.NoError(tb, err)
	return data
}

// clip makes a small mp4 with ffmpeg (Debian package ffmpeg).
func clip(tb testing.TB, seconds string) []byte {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "clip.mp4")
	b, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
		"testsrc=duration="+seconds+":size=64x48:rate=10", "-pix_fmt", "yuv420p", out).CombinedOutput()
	require.NoError(tb, err, "ffmpeg must be installed: %s", b)
	data, err := os.ReadFile(out)
	require.NoError(tb, err)
	return data
}

// waitState polls GET path through tg until the row's state is one of
// done, and returns the row.
func waitState(tb testing.TB, tg target, path, token string, timeout time.Duration, done ...string) map[string]any {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := tg.do(tb, http.MethodGet, path, token, nil)
		require.Equal(tb, http.StatusOK, r.status, "GET %s via %s: %s", path, tg.name, r.body)
		row := r.Map(tb)
		state, _ := row["state"].(string)
		if slices.Contains(done, state) {
			return row
		}
		if time.Now().After(deadline) {
			tb.Fatalf("GET %s via %s: still %q after %s: %s", path, tg.name, state, timeout, r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
