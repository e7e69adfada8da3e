package admission

import (
	"net/http"
	"net/netip"
	"strconv"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// userKey returns the function naming a request's user: "user:<id>" from a
// token valid under secrets (signature and expiry; revocation is gpusvc's
// business), else "ip:<address or IPv6 /64>".
func userKey(secrets [][]byte, trusted []netip.Prefix) func(*http.Request) string {
	v := &auth.Verifier{Secrets: secrets}
	return func(r *http.Request) string {
		if h := r.Header.Get("Authorization"); h != "" && len(secrets) > 0 {
			// With a nil Revocation, Verify does no I/O.
			if c, err := v.Verify(r.Context(), h); err == nil {
				return "user:" + strconv.FormatInt(c.UserID, 10)
			}
		}
		return "ip:" + ratelimit.IPSubject(ratelimit.ClientIP(r, trusted))
	}
}
