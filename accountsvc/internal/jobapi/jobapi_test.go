package jobapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/accountsvc/internal/jobapi"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/web"
)

var secret = []byte("test-secret-0123456789abcdef")

type fixture struct {
	srv    *httptest.Server
	store  *jobs.Store
	ledger *credits.Ledger
	pool   interface {
		db.Querier
		db.Beginner
	}
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	pool := dbtest.New(t)
	rc, prefix := dbtest.Redis(t)
	client, err := jobs.NewInsertClient(pool)
	require.NoError(t, err)
	ev := jobs.NewEvents(rc, prefix)
	ledger := credits.NewLedger(pool, credits.Options{})
	st := jobs.NewStore(jobs.Options{Pool: pool, River: client, Events: ev, Ledger: ledger, Log: zap.NewNop()})
	e := web.New(web.Options{Service: "test", Log: zap.NewNop(), Registry: prometheus.NewRegistry()})
	jobapi.New(jobapi.Options{Store: st, Events: ev, Verifier: &auth.Verifier{Secrets: [][]byte{secret}},
		KeepAlive: 50 * time.Millisecond}).Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return fixture{srv: srv, store: st, ledger: ledger, pool: pool}
}

func (f fixture) user(t *testing.T) (int64, string) {
	t.Helper()
	var id int64
	require.NoError(t, f.pool.QueryRow(context.Background(), `INSERT INTO users (email, password, metadata) VALUES ($1, 'x', '{}') RETURNING id`,
		fmt.Sprintf("u%d@example.com", time.Now().UnixNano())).Scan(&id))
	_, err := f.ledger.Grant(context.Background(), nil, credits.GrantInput{UserID: id, Amount: 100, Memo: "test"})
	require.NoError(t, err)
	tok, _, err := auth.Issue(secret, id, 0, time.Hour, time.Now())
	require.NoError(t, err)
	return id, tok
}

func (f fixture) queueAudio(t *testing.T, userID int64) jobs.Job {
	t.Helper()
	ctx := context.Background()
	var id int64
	require.NoError(t, db.InTx(ctx, f.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `
INSERT INTO audio (user_id, name, cdn_id, size, metadata, state) VALUES ($1, 'a.mp3', gen_random_uuid()::text, 0, '{"prompt":"x"}', 'QUEUED') RETURNING id`,
			userID).Scan(&id); err != nil {
			return err
		}
		return f.store.OnAudioQueued(ctx, tx, id)
	}))
	j, err := f.store.ForAudio(ctx, id)
	require.NoError(t, err)
	return j
}

func (f fixture) do(t *testing.T, method, path, token string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}

func TestGetAndCancel(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u, tok := f.user(t)
	_, other := f.user(t)
	j1 := f.queueAudio(t, u)
	j2 := f.queueAudio(t, u)

	code, body := f.do(t, http.MethodGet, "/v1/jobs/"+j2.PublicID, tok)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "audio", body["kind"])
	require.Equal(t, "QUEUED", body["state"])
	require.Equal(t, 2.0, body["queue_position"])
	require.Nil(t, body["result"])
	require.Nil(t, body["error"])

	for _, tc := range []struct{ path, token string }{
		{"/v1/jobs/" + j1.PublicID, other}, // not the owner
		{"/v1/jobs/not-a-uuid", tok},       // malformed
		{"/v1/jobs/" + strings.Repeat("0", 8) + "-0000-0000-0000-000000000000", tok},
	} {
		code, body = f.do(t, http.MethodGet, tc.path, tc.token)
		require.Equal(t, http.StatusNotFound, code)
		require.Equal(t, "Job not found", body["message"])
	}
	code, _ = f.do(t, http.MethodGet, "/v1/jobs/"+j1.PublicID, "")
	require.Equal(t, http.StatusUnauthorized, code)

	code, body = f.do(t, http.MethodDelete, "/v1/jobs/"+j1.PublicID, tok)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "CANCELED", body["state"])
	require.Nil(t, body["queue_position"])
	code, body = f.do(t, http.MethodDelete, "/v1/jobs/"+j1.PublicID, tok)
	require.Equal(t, http.StatusConflict, code)
	require.Equal(t, "CANCELED", body["state"])
	code, body = f.do(t, http.MethodGet, "/v1/jobs/"+j2.PublicID, tok)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 1.0, body["queue_position"])
}

type sseEvent struct {
	name string
	data map[string]any
}

func readEvents(t *testing.T, r io.Reader, out chan<- sseEvent) {
	sc := bufio.NewScanner(r)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data)
		case line == "" && ev.name != "":
			out <- ev
			ev = sseEvent{}
		}
	}
	close(out)
}

func TestEventsSnapshotProgressThenTerminal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	u, tok := f.user(t)
	j := f.queueAudio(t, u)

	req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/jobs/"+j.PublicID+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	events := make(chan sseEvent, 100)
	go readEvents(t, resp.Body, events)
	next := func() sseEvent {
		select {
		case ev, ok := <-events:
			require.True(t, ok, "stream ended early")
			return ev
		case <-time.After(10 * time.Second):
			require.FailNow(t, "no event")
		}
		return sseEvent{}
	}
	snap := next()
	require.Equal(t, "snapshot", snap.name)
	require.Equal(t, "QUEUED", snap.data["state"])

	// Drive the job as a worker would.
	_, res, err := f.store.Claim(ctx, j.ID, 1)
	require.NoError(t, err)
	require.Equal(t, jobs.ClaimRun, res)
	for i := 1; i <= 3; i++ {
		require.NoError(t, f.store.Progress(ctx, j.ID, float64(i)/4, "generating"))
	}
	_, _, err = f.store.Finish(ctx, j.ID, jobs.Outcome{State: jobs.StateCompleted, Result: jobs.Result{AudioIDs: []int64{j.AudioID}}}, nil)
	require.NoError(t, err)

	st := next()
	require.Equal(t, "state", st.name)
	require.Equal(t, "PROCESSING", st.data["state"])
	var seq float64 = st.data["seq"].(float64)
	for i := 1; i <= 3; i++ {
		p := next()
		require.Equal(t, "progress", p.name)
		require.Equal(t, float64(i)/4, p.data["progress"])
		require.Greater(t, p.data["seq"].(float64), seq)
		seq = p.data["seq"].(float64)
	}
	done := next()
	require.Equal(t, "done", done.name)
	require.Equal(t, "COMPLETED", done.data["state"])
	require.Equal(t, map[string]any{"audio_ids": []any{float64(j.AudioID)}}, done.data["result"])
	require.NotNil(t, done.data["finished_at"])
	// The stream ends after the terminal event.
	select {
	case _, ok := <-events:
		require.False(t, ok)
	case <-time.After(5 * time.Second):
		require.FailNow(t, "stream did not end")
	}

	// A finished job streams its snapshot and the terminal event at once.
	req, _ = http.NewRequest(http.MethodGet, f.srv.URL+"/v1/jobs/"+j.PublicID+"/events", nil)
	req.Header.Set("Authorization", tok)
	resp2, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp2.Body.Close()
	b, err := io.ReadAll(resp2.Body)
	require.NoError(t, err)
	require.Contains(t, string(b), "event: snapshot")
	require.Contains(t, string(b), "event: done")
}

// TestEventsRecoverLostTerminalEvent: events are best effort; when the
// terminal one is lost (here: the job is finished behind the stream's back,
// without any publish), the stream still ends with "done" from the row.
func TestEventsRecoverLostTerminalEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	u, tok := f.user(t)
	j := f.queueAudio(t, u)

	req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/jobs/"+j.PublicID+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	events := make(chan sseEvent, 100)
	go readEvents(t, resp.Body, events)
	first := <-events
	require.Equal(t, "snapshot", first.name)

	_, err = f.pool.Exec(ctx, `UPDATE jobs SET state = 'ERROR', error = 'lost', seq = seq + 1, finished_at = now() WHERE id = $1`, j.ID)
	require.NoError(t, err)
	for {
		select {
		case ev, ok := <-events:
			require.True(t, ok, "stream ended without done")
			if ev.name != "done" {
				continue
			}
			require.Equal(t, "ERROR", ev.data["state"])
			return
		case <-time.After(10 * time.Second):
			require.FailNow(t, "no done event")
		}
	}
}
