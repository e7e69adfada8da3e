package storage_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/storage"
	"github.com/nounsai/sdserver/shared/storage/bunnytest"
)

func TestKeys(t *testing.T) {
	t.Parallel()
	require.Equal(t, "7/abc-full.png", storage.ImageKey(7, "abc"))
	require.Equal(t, "7/abc-thumbnail.png", storage.ThumbnailKey(7, "abc"))
	require.Equal(t, "7/abc-full.mp3", storage.AudioKey(7, "abc"))
	require.Equal(t, "7/abc-full.mp4", storage.VideoKey(7, "abc"))
	for _, bad := range []string{"", "../x", "a/../b", "/a", "a//b", "a/b/", "a b", "a\x00b", "..", "a/./b"} {
		require.False(t, storage.ValidKey(bad), bad)
	}
	require.True(t, storage.ValidKey("12/0b8f-full.png"))
}

func newBunny(t *testing.T) (*bunnytest.Server, *storage.Bunny) {
	t.Helper()
	fake := bunnytest.New(t, map[string]string{"img": "k1", "aud": "k2", "vid": "k3"})
	b := storage.NewBunny(storage.BunnyConfig{
		BaseURL: fake.URL,
		Zones: map[storage.Kind]storage.Zone{
			storage.KindImage: {Name: "img", AccessKey: "k1"},
			storage.KindAudio: {Name: "aud", AccessKey: "k2"},
			storage.KindVideo: {Name: "vid", AccessKey: "k3"},
		},
		Public: map[storage.Kind]string{storage.KindAudio: "https://nounsai-audio.b-cdn.net"},
	}, nil)
	return fake, b
}

func TestBunnyRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake, b := newBunny(t)

	require.NoError(t, b.Put(ctx, storage.KindAudio, storage.AudioKey(3, "u"), []byte("mp3")))
	got, ok := fake.Object("aud", "3/u-full.mp3")
	require.True(t, ok)
	require.Equal(t, "mp3", string(got))

	data, err := b.Get(ctx, storage.KindAudio, "3/u-full.mp3")
	require.NoError(t, err)
	require.Equal(t, "mp3", string(data))

	_, err = b.Get(ctx, storage.KindAudio, "3/missing-full.mp3")
	require.ErrorIs(t, err, storage.ErrNotFound)

	require.NoError(t, b.Delete(ctx, storage.KindAudio, "3/u-full.mp3"))
	require.Equal(t, 0, fake.Count("aud"))
	require.NoError(t, b.Delete(ctx, storage.KindAudio, "3/u-full.mp3"), "deleting a missing object is fine")

	require.Equal(t, "https://nounsai-audio.b-cdn.net/3/u-full.mp3", b.URL(storage.KindAudio, "3/u-full.mp3"))
	require.Equal(t, "", b.URL(storage.KindImage, "3/u-full.png"))

	// Each kind goes to its own zone with its own key.
	require.NoError(t, b.Put(ctx, storage.KindVideo, "3/v-full.mp4", []byte("mp4")))
	_, ok = fake.Object("vid", "3/v-full.mp4")
	require.True(t, ok)
	for _, r := range fake.Requests() {
		require.NotEqual(t, http.StatusUnauthorized, r.Status)
	}
}

func TestBunnyFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake, b := newBunny(t)

	fake.Fail(http.MethodPut, http.StatusInternalServerError)
	err := b.Put(ctx, storage.KindImage, "1/a-full.png", []byte("x"))
	require.Error(t, err)
	require.Equal(t, apperr.KindBadGateway, apperr.KindOf(err))
	require.Equal(t, 0, fake.Count("img"))
	fake.Fail(http.MethodPut, 0)

	wrong := storage.NewBunny(storage.BunnyConfig{BaseURL: fake.URL,
		Zones: map[storage.Kind]storage.Zone{storage.KindImage: {Name: "img", AccessKey: "nope"}}}, nil)
	err = wrong.Put(ctx, storage.KindImage, "1/a-full.png", []byte("x"))
	require.Equal(t, apperr.KindBadGateway, apperr.KindOf(err))
	require.Contains(t, err.Error(), "401")
	require.NotContains(t, err.Error(), "nope", "access keys never appear in errors")

	err = b.Put(ctx, storage.KindImage, "../etc/passwd", []byte("x"))
	require.Error(t, err)
	require.Equal(t, 0, fake.Count("img"))

	// A dead endpoint is a 502, not a hang or a panic.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	deadB := storage.NewBunny(storage.BunnyConfig{BaseURL: dead.URL,
		Zones: map[storage.Kind]storage.Zone{storage.KindImage: {Name: "img", AccessKey: "k1"}}}, nil)
	err = deadB.Put(ctx, storage.KindImage, "1/a-full.png", []byte("x"))
	require.Equal(t, apperr.KindBadGateway, apperr.KindOf(err))
}

func TestLocal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	l, err := storage.NewLocal(dir, "http://127.0.0.1:8080/media")
	require.NoError(t, err)

	require.NoError(t, l.Put(ctx, storage.KindImage, "5/c-full.png", []byte("png")))
	data, err := l.Get(ctx, storage.KindImage, "5/c-full.png")
	require.NoError(t, err)
	require.Equal(t, "png", string(data))
	require.Equal(t, "http://127.0.0.1:8080/media/5/c-full.png", l.URL(storage.KindImage, "5/c-full.png"))

	srv := httptest.NewServer(http.StripPrefix("/media", l))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/media/5/c-full.png")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "png", string(body))
	for _, p := range []string{"/media/5/", "/media/5", "/media/../../etc/passwd", "/media/5/none-full.png", "/media/%2e%2e/x"} {
		resp, err := http.Get(srv.URL + p)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, p)
	}

	require.NoError(t, l.Delete(ctx, storage.KindImage, "5/c-full.png"))
	require.NoError(t, l.Delete(ctx, storage.KindImage, "5/c-full.png"))
	_, err = l.Get(ctx, storage.KindImage, "5/c-full.png")
	require.True(t, errors.Is(err, storage.ErrNotFound))
	require.Error(t, l.Put(ctx, storage.KindImage, "../x", nil))
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	cfg := storage.LoadConfig(config.FromMap(map[string]string{}))
	require.NoError(t, cfg.Validate())
	require.Equal(t, storage.BackendLocal, cfg.Backend)
	require.Equal(t, ".run/storage", cfg.Dir)
	require.Equal(t, "http://127.0.0.1:8080/media", cfg.LocalURL)
	require.Equal(t, "https://nounsai-audio.b-cdn.net", cfg.AudioURL)
	require.Equal(t, "https://nounsai-video.b-cdn.net", cfg.VideoURL)

	cfg = storage.LoadConfig(config.FromMap(map[string]string{"STORAGE_BACKEND": "bunny", "STORAGE_ZONE": "z"}))
	err := cfg.Validate()
	require.ErrorContains(t, err, "STORAGE_ACCESS_KEY")
	require.ErrorContains(t, err, "STORAGE_ZONE_AUDIO")

	cfg = storage.LoadConfig(config.FromMap(map[string]string{"STORAGE_BACKEND": "s3"}))
	require.ErrorContains(t, cfg.Validate(), "STORAGE_BACKEND")
}

func TestDeleteOrphans(t *testing.T) {
	t.Parallel()
	l, err := storage.NewLocal(t.TempDir(), "http://127.0.0.1:8080/media")
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, l.Put(ctx, storage.KindImage, "5/a-full.png", []byte("png")))
	require.NoError(t, l.Put(ctx, storage.KindAudio, "5/b-full.mp3", []byte("mp3")))

	// The caller's request context may be gone: the row change committed,
	// so the objects are deleted anyway. An invalid key is logged and the
	// others are still deleted.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	core, logs := observer.New(zap.WarnLevel)
	storage.DeleteOrphans(cancelled, l, []storage.Object{
		{Kind: storage.KindImage, Key: "../x"},
		{Kind: storage.KindImage, Key: "5/a-full.png"},
		{Kind: storage.KindAudio, Key: "5/b-full.mp3"},
	}, zap.New(core))
	for _, o := range []storage.Object{{Kind: storage.KindImage, Key: "5/a-full.png"}, {Kind: storage.KindAudio, Key: "5/b-full.mp3"}} {
		_, err := l.Get(ctx, o.Kind, o.Key)
		require.ErrorIs(t, err, storage.ErrNotFound, o.Key)
	}
	require.Equal(t, 1, logs.FilterMessage("delete storage objects failed").Len())

	storage.DeleteOrphans(ctx, l, nil, zap.NewNop()) // nothing to do
}
