package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/dbtest"
)

func TestCreditsCommand(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbURL := dbtest.NewURL(t)
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	var user int64
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO users (email, password, metadata) VALUES ('ops@example.com', 'x', '{}') RETURNING id`).Scan(&user))
	cfg := app.Config{Common: config.Common{DatabaseURL: dbURL}}
	uid := func() string { return strconv.FormatInt(user, 10) }

	var out bytes.Buffer
	require.NoError(t, runCredits(ctx, []string{"grant", "--user", uid(), "--amount", "40", "--expires", "30d", "--memo", "support"}, cfg, &out))
	var g map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &g))
	require.Equal(t, float64(40), g["amount"])
	exp, err := time.Parse(time.RFC3339Nano, g["expires_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(30*24*time.Hour), exp, time.Minute)

	out.Reset()
	require.NoError(t, runCredits(ctx, []string{"grant", "--user", uid(), "--amount", "2", "--memo", "forever"}, cfg, &out))
	require.NoError(t, json.Unmarshal(out.Bytes(), &g))
	require.Nil(t, g["expires_at"])

	out.Reset()
	require.NoError(t, runCredits(ctx, []string{"balance", "--user", uid()}, cfg, &out))
	require.JSONEq(t, `{"user_id": `+uid()+`, "credits": 42}`, out.String())

	for _, args := range [][]string{
		{},
		{"grant"},
		{"grant", "--user", uid(), "--amount", "0", "--memo", "m"},
		{"grant", "--user", uid(), "--amount", "5"},
		{"grant", "--user", uid(), "--amount", "5", "--memo", "m", "--expires", "-3d"},
		{"grant", "--user", uid(), "--amount", "5", "--memo", "m", "--expires", "soon"},
		{"grant", "--user", "999999", "--amount", "5", "--memo", "m"},
		{"grant", "--bogus"},
		{"spend", "--user", uid()},
	} {
		require.Error(t, runCredits(ctx, args, cfg, &out), "%v", args)
	}
}

func TestParseLifetime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"never", 0, true},
		{"30d", 30 * 24 * time.Hour, true},
		{"36h", 36 * time.Hour, true},
		{"0d", 0, false},
		{"-1h", 0, false},
		{"99999d", 0, false},
		{"x", 0, false},
	}
	for _, tt := range tests {
		got, err := parseLifetime(tt.in)
		if !tt.ok {
			require.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
}
