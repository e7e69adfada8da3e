package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/gpuroute"
)

// TestSlotNoticeBeforeTheAnswer: a request that asks for the slot notice
// (the proxy's) gets one 103 with X-Slot-Notice: released once its GPU slot
// is free, before the final answer, which is the usual 200 without the
// notice header; a request that does not ask gets no informational
// response.
func TestSlotNoticeBeforeTheAnswer(t *testing.T) {
	t.Parallel()
	s := start(t, testConfig(t))
	_, tok := s.user(t, 10)

	send := func(ask bool) (notices []textproto.MIMEHeader, inFlightAtNotice []int, resp *http.Response, body []byte) {
		raw, err := json.Marshal(txt2img(3, 2))
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, s.url+"/images", bytes.NewReader(raw))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("challenge-token", challenge)
		req.Header.Set("Authorization", tok)
		req.Header.Set("X-Request-ID", fmt.Sprintf("req-notice-%t", ask))
		if ask {
			req.Header.Set(gpuroute.SlotNoticeHeader, "1")
		}
		var mu sync.Mutex
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, gpuroute.SlotNoticeStatus, code)
			notices = append(notices, h)
			inFlightAtNotice = append(inFlightAtNotice, s.capa.InFlight())
			return nil
		}}
		resp, err = s.client.Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		require.NoError(t, err)
		return notices, inFlightAtNotice, resp, body
	}

	notices, inFlight, resp, body := send(true)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Len(t, notices, 1)
	require.Equal(t, gpuroute.SlotReleased, notices[0].Get(gpuroute.SlotNoticeHeader))
	require.Len(t, notices[0], 1, "the notice carries its own header only: %v", notices[0])
	require.Equal(t, []int{0}, inFlight, "the slot is free when the notice comes")
	require.Empty(t, resp.Header.Get(gpuroute.SlotNoticeHeader))
	require.Equal(t, "req-notice-true", resp.Header.Get("X-Request-ID"), "headers set before the notice stay on the answer")
	require.NotEmpty(t, resp.Header.Get("X-Image-Id"))
	decodePNG(t, body)

	notices, _, resp, body = send(false)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Empty(t, notices)
}
