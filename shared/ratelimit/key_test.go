package ratelimit_test

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/ratelimit"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"direct client", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"spoofed XFF from an untrusted peer is ignored", "203.0.113.5:4000", []string{"1.1.1.1"}, "203.0.113.5"},
		{"trusted proxy", "10.0.0.2:80", []string{"203.0.113.5"}, "203.0.113.5"},
		{"client-supplied entry left of the real one", "10.0.0.2:80", []string{"1.1.1.1, 203.0.113.5"}, "203.0.113.5"},
		{"chain of trusted proxies", "10.0.0.2:80", []string{"203.0.113.5, 10.0.0.9, 10.1.2.3"}, "203.0.113.5"},
		{"several header lines", "10.0.0.2:80", []string{"1.1.1.1", "203.0.113.5, 10.0.0.9"}, "203.0.113.5"},
		{"spoofed trusted address left of the client", "10.0.0.2:80", []string{"10.9.9.9, 203.0.113.5"}, "203.0.113.5"},
		{"all trusted: leftmost", "10.0.0.2:80", []string{"10.0.0.7, 10.0.0.8"}, "10.0.0.7"},
		{"trusted proxy without XFF", "10.0.0.2:80", nil, "10.0.0.2"},
		{"malformed entry stops the walk", "10.0.0.2:80", []string{"203.0.113.5, bogus"}, "10.0.0.2"},
		{"entry with port", "10.0.0.2:80", []string{"203.0.113.5:1234"}, "203.0.113.5"},
		{"ipv6 peer via proxy", "[::1]:80", []string{"2001:db8::1"}, "2001:db8::1"},
		{"ipv6 entry with port", "[::1]:80", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"ipv4-mapped peer", "[::ffff:203.0.113.5]:80", nil, "203.0.113.5"},
		{"unparsable remote addr", "pipe", nil, "pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			require.Equal(t, tt.want, ratelimit.ClientIP(r, trusted))
		})
	}
}
