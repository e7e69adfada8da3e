package auth

import "context"

type claimsKey struct{}

// WithClaims returns a copy of ctx carrying claims. The middleware calls it;
// tests of handlers may call it directly.
func WithClaims(ctx context.Context, claims Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, claims)
}

// FromContext returns the claims the auth middleware stored in ctx. ok is
// false when no middleware ran or it let the request through without claims.
// Anonymous callers (see Verifier.Optional) have claims with Anonymous set.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}

// UserID returns the current user's id: the token's `id`, or the anonymous
// account's id for anonymous callers (check Claims.Anonymous to tell them
// apart). ok is false when ctx carries no claims.
func UserID(ctx context.Context) (int64, bool) {
	c, ok := FromContext(ctx)
	if !ok {
		return 0, false
	}
	return c.UserID, true
}
