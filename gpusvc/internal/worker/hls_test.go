package worker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/storage"
)

// An "audio" file that is an ID3 tag followed by an HLS playlist naming a
// local file (issue 13.6) must not make ffmpeg read that file into the
// user's video: the project fails, nothing is rendered, nothing charged.
func TestHLSPlaylistAudioIsNotFollowed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, nil, jobs.Config{})
	u := e.user(t, 1000)

	secret := filepath.Join(t.TempDir(), "secret.mp3")
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=3", secret).CombinedOutput()
	require.NoError(t, err, "ffmpeg must be installed: %s", out)
	playlist := fmt.Sprintf("ID3\x04\x00\x00\x00\x00\x00\x00#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n%s\n#EXT-X-ENDLIST\n", secret)
	var audioID int64
	require.NoError(t, e.pool.QueryRow(ctx, `
INSERT INTO audio (user_id, name, cdn_id, size, metadata, state) VALUES ($1, 'song.mp3', 'hls-audio', $2, '{}', 'COMPLETED') RETURNING id`,
		u, len(playlist)).Scan(&audioID))
	require.NoError(t, e.storage.Put(ctx, storage.KindAudio, storage.AudioKey(u, "hls-audio"), []byte(playlist)))

	ids := []int64{e.keyframe(t, u, 10), e.keyframe(t, u, 200)}
	projectID := e.queueProject(t, u, audioID, fmt.Sprintf(`{"timestamps":[0,2],"imageIds":[%d,%d]}`, ids[0], ids[1]))
	j := waitJob(t, ctx, func() (jobs.Job, error) { return e.store.ForVideoProject(ctx, projectID) }, terminal)
	require.Equal(t, jobs.StateError, j.State, "the playlist was rendered into a video")
	var projCDN string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT cdn_id FROM video_projects WHERE id = $1`, projectID).Scan(&projCDN))
	_, err = os.Stat(filepath.Join(e.storeDir, storage.VideoKey(u, projCDN)))
	require.True(t, os.IsNotExist(err), "no video was stored")
	e.requireBalance(t, u, 1000)
}
