package console

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSessions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := newSessions("s3cret-token", time.Hour)
	require.True(t, s.enabled())
	require.True(t, s.checkToken("s3cret-token"))
	require.False(t, s.checkToken("s3cret-toke"))
	require.False(t, s.checkToken(""))

	v, exp := s.issue(now)
	require.Equal(t, now.Add(time.Hour), exp)
	require.NotContains(t, v, "s3cret")
	require.True(t, s.valid(v, now))
	require.True(t, s.valid(v, now.Add(59*time.Minute)))
	require.False(t, s.valid(v, now.Add(time.Hour)), "expired")

	// Any change of the expiry, id or MAC is refused.
	parts := strings.Split(v, ".")
	require.Len(t, parts, 3)
	e, id, sig := parts[0], parts[1], parts[2]
	require.False(t, s.valid(e+"0."+id+"."+sig, now))
	require.False(t, s.valid(e+"."+id+"x."+sig, now))
	first := "A" // the first character carries six whole bits, so any change is a change
	if strings.HasPrefix(sig, first) {
		first = "B"
	}
	require.False(t, s.valid(e+"."+id+"."+first+sig[1:], now))
	require.False(t, s.valid(e+"."+sig, now))
	require.False(t, s.valid(e, now))
	require.False(t, s.valid("", now))
	require.False(t, s.valid(strings.Repeat("1", 300)+"."+id+"."+sig, now))

	// Two sign-ins at the same instant get distinct cookies.
	again, _ := s.issue(now)
	require.NotEqual(t, v, again)
	require.True(t, s.valid(again, now))

	// Another token (a rotation) ends the session.
	require.False(t, newSessions("other-token", time.Hour).valid(v, now))

	// The CSRF token belongs to one cookie.
	csrf := s.csrf(v)
	require.True(t, s.validCSRF(v, csrf))
	require.False(t, s.validCSRF(v, ""))
	require.False(t, s.validCSRF(again, csrf))

	// No token: nothing is valid.
	off := newSessions("", time.Hour)
	require.False(t, off.enabled())
	require.False(t, off.checkToken(""))
	require.False(t, off.valid(v, now))
}

func TestPivot(t *testing.T) {
	t.Parallel()
	tb := pivot(true, []string{"available", "running"}, []JobCount{
		{Kind: "video", State: "running", Count: 2},
		{Kind: "audio", State: "available", Count: 3},
		{Kind: "video", State: "weird", Count: 1},
		{Kind: "audio", State: "running", Count: 1},
	})
	require.Equal(t, []string{"available", "running", "weird"}, tb.States)
	require.Equal(t, []jobRow{
		{Kind: "audio", Counts: []int64{3, 1, 0}},
		{Kind: "video", Counts: []int64{0, 2, 1}},
	}, tb.Rows)
	require.Equal(t, []int64{3, 3, 1}, tb.Totals)

	empty := pivot(false, []string{"QUEUED"}, nil)
	require.False(t, empty.Present)
	require.Empty(t, empty.Rows)
	require.Equal(t, []int64{0}, empty.Totals)
}
