package worker

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/nouns"
	"github.com/nounsai/sdserver/shared/apperr"
)

// TestCheckAudio: real MP3 passes; a file that only looks like one (an ID3
// header and junk) fails the sniff and, read as MP3 anyway, the decode,
// permanently, so the job ends at once instead of retrying.
func TestCheckAudio(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := &Runner{}
	dir := t.TempDir()

	b, err := nouns.New(nouns.Options{})
	require.NoError(t, err)
	res, err := b.Audio(ctx, inference.AudioRequest{Op: inference.OpTextToAudio, Prompt: "test", Seed: 1, DurationSec: 1})
	require.NoError(t, err)
	good := filepath.Join(dir, "good.mp3")
	require.NoError(t, os.WriteFile(good, res.Tracks[0], 0o600))
	in, err := audioInputArgs(res.Tracks[0])
	require.NoError(t, err)
	require.Equal(t, []string{"-protocol_whitelist", "file,pipe", "-f", "mp3"}, in)
	require.NoError(t, r.checkAudio(ctx, good, in))

	fake := append([]byte("ID3\x03\x00\x00\x00\x00\x00\x00"), make([]byte, 4096)...)
	for i := range fake[10:] {
		fake[10+i] = byte(i * 7)
	}
	bad := filepath.Join(dir, "bad.mp3")
	require.NoError(t, os.WriteFile(bad, fake, 0o600))
	_, err = audioInputArgs(fake)
	require.Error(t, err, "an ID3 tag followed by junk is not audio")
	err = r.checkAudio(ctx, bad, in)
	require.Error(t, err)
	reason, permanent := classify(err)
	require.True(t, permanent)
	require.Equal(t, "the project's audio could not be decoded", reason)
	require.Equal(t, apperr.KindInvalid, apperr.KindOf(err))
}
