package notify_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/notify"
)

func TestDiscordPostsEmbedAndSkipsWithoutURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sent, err := notify.NewDiscord("", nil).Send(ctx, notify.Message{Embeds: []notify.Embed{{Title: "x"}}})
	require.NoError(t, err)
	require.False(t, sent)

	rec := notify.NewRecorder(t.TempDir())
	srv := httptest.NewServer(rec)
	defer srv.Close()
	m := notify.Message{Embeds: []notify.Embed{{Title: "Video COMPLETED", Description: "https://v/1/a-full.mp4",
		Fields: []notify.Field{{Name: "Time to process", Value: notify.Clock(3723 * time.Second)}}}}}
	sent, err = notify.NewDiscord(srv.URL, nil).Send(ctx, m)
	require.NoError(t, err)
	require.True(t, sent)
	require.Equal(t, []notify.Message{m}, rec.Messages())
	require.Equal(t, "1:02:03", m.Embeds[0].Fields[0].Value)

	// A failing endpoint is an error that does not name the URL.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer bad.Close()
	_, err = notify.NewDiscord(bad.URL+"/secret-token", nil).Send(ctx, m)
	require.ErrorContains(t, err, "status 500")
	require.NotContains(t, err.Error(), "secret-token")
}
