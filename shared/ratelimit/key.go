package ratelimit

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nounsai/sdserver/shared/auth"
)

// ByIP counts requests per client IP (see ClientIP), IPv6 clients per /64
// (see IPSubject).
func ByIP(trusted []netip.Prefix) KeyFunc {
	return func(r *http.Request) string { return "ip:" + IPSubject(ClientIP(r, trusted)) }
}

// IPSubject returns the subject a per-IP limit counts ip under: an IPv4
// address (IPv4-mapped IPv6 included) as itself, an IPv6 address as its /64
// ("2001:db8:1:2::/64"). One subscriber usually gets a whole /64 and can pick
// any address in it, so counting single IPv6 addresses would give a client
// 2^64 fresh budgets. A string that is not an address is returned as is.
func IPSubject(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

// ByUser counts requests per signed-in user, from the auth claims in the
// request context. Requests without claims or with anonymous claims get an
// empty key, so the rule does not apply to them: use it on routes behind
// auth.Verifier.Required, or pair it with a rule keyed by IP.
func ByUser(r *http.Request) string {
	c, ok := auth.FromContext(r.Context())
	if !ok || c.Anonymous {
		return ""
	}
	return "user:" + strconv.FormatInt(c.UserID, 10)
}

// ClientIP returns the client's IP address. X-Forwarded-For is believed only
// when the direct peer (r.RemoteAddr) is in trusted: the list is walked from
// the right, skipping trusted proxies, and the first untrusted address is
// the client. A client cannot spoof its address by sending its own
// X-Forwarded-For, since only entries appended by trusted proxies are
// skipped. A malformed entry ends the walk at the last good hop. If
// RemoteAddr does not parse, it is returned as is.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	client := peer
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		entries := strings.Split(values[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			addr, ok := parseAddr(strings.TrimSpace(entries[j]))
			if !ok {
				return client.String()
			}
			client = addr
			if !isTrusted(addr, trusted) {
				return addr.String()
			}
		}
	}
	return client.String()
}

// parseAddr parses "ip", "ip:port" or "[ipv6]:port", unmapping IPv4-in-IPv6
// and dropping any zone.
func parseAddr(s string) (netip.Addr, bool) {
	if s == "" || len(s) > 64 {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
