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

// TestByIPGroupsIPv6By64 checks the per-IP subject: IPv4 clients are counted
// per address, IPv4-mapped IPv6 as the IPv4 address, and IPv6 clients per
// /64, since one host usually holds a whole /64 and could otherwise mint a
// fresh key for every request.
func TestByIPGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	key := ratelimit.ByIP(nil)
	subject := func(remote string) string {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		return key(r)
	}
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"two IPv4 addresses", "203.0.113.5:1", "203.0.113.6:1", false},
		{"one IPv4 address, two ports", "203.0.113.5:1", "203.0.113.5:2", true},
		{"IPv4-mapped IPv6 is the IPv4 address", "[::ffff:203.0.113.5]:1", "203.0.113.5:2", true},
		{"IPv4-mapped neighbours stay apart", "[::ffff:203.0.113.5]:1", "[::ffff:203.0.113.6]:1", false},
		{"one /64, different interface ids", "[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:1", true},
		{"one /64, with a zone", "[2001:db8:1:2::1%eth0]:1", "[2001:db8:1:2::7]:1", true},
		{"neighbouring /64s", "[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := subject(tt.a), subject(tt.b)
			if tt.same {
				require.Equal(t, a, b)
			} else {
				require.NotEqual(t, a, b)
			}
		})
	}
	require.Equal(t, "ip:203.0.113.5", subject("[::ffff:203.0.113.5]:80"))
	require.Equal(t, "ip:2001:db8:1:2::/64", subject("[2001:db8:1:2:aaaa::1]:80"))
	require.Equal(t, "ip:pipe", subject("pipe"))
}

func TestIPSubject(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"203.0.113.5":          "203.0.113.5",
		"::ffff:203.0.113.5":   "203.0.113.5",
		"2001:db8::1":          "2001:db8::/64",
		"2001:db8:0:0:1:2:3:4": "2001:db8::/64",
		"::1":                  "::/64",
		"fe80::1%eth0":         "fe80::/64",
		"not an address":       "not an address",
		"":                     "",
	} {
		require.Equal(t, want, ratelimit.IPSubject(in), in)
	}
}
