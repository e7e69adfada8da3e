package media_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/media"
)

// longClip is a Matroska video of two frames, the second one at
// lastFrame seconds (e.g. "3000000000"): a tiny crafted file whose
// duration ffprobe reports as about lastFrame seconds, and whose first and
// last frames both decode.
func longClip(tb testing.TB, lastFrame string) []byte {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "long.mkv")
	b, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
		"testsrc=duration=0.2:size=64x48:rate=10", "-vf", "setpts='if(eq(N,1),"+lastFrame+"/TB,PTS)'",
		"-fps_mode", "passthrough", "-pix_fmt", "yuv420p", "-c:v", "libx264", out).CombinedOutput()
	require.NoError(tb, err, "ffmpeg (Debian package ffmpeg) must be installed: %s", b)
	data, err := os.ReadFile(out)
	require.NoError(tb, err)
	return data
}

func TestProbeRejectsHugeDuration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := media.FFmpeg{}

	// Claims about 95 years: more than an INT of seconds can hold.
	_, err := f.Probe(ctx, longClip(t, "3000000000"), media.DefaultLimits)
	require.Equal(t, apperr.KindInvalid, apperr.KindOf(err), "%v", err)
	require.Contains(t, err.Error(), "too long")

	// Just over the cap is rejected too; just under it is accepted.
	_, err = f.Probe(ctx, longClip(t, "86401"), media.DefaultLimits)
	require.Equal(t, apperr.KindInvalid, apperr.KindOf(err), "%v", err)
	info, err := f.Probe(ctx, longClip(t, "86000"), media.DefaultLimits)
	require.NoError(t, err)
	require.InDelta(t, 86000, info.Duration, 1)
	require.NotEmpty(t, info.First)
	require.NotEmpty(t, info.Last)
}
