package account

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apperr"
)

// TestSignupTakeover: the owner of an address and an attacker both sign up
// with it before it is verified, in either order and also past the
// per-address email cap; the owner then clicks the newest verification
// email in their inbox. No password the attacker chose may open the
// account: a contested address is verified without any signup's password
// and the verification sends the owner a set-password (reset) link, which
// works even when the attacker has used up the email cap.
func TestSignupTakeover(t *testing.T) {
	t.Parallel()
	type signup struct {
		attacker bool
		password string
	}
	owner := func(pw string) signup { return signup{password: pw} }
	attacker := func(pw string) signup { return signup{attacker: true, password: pw} }
	for _, tc := range []struct {
		name    string
		mailCap int
		signups []signup
	}{
		{"owner first", 0, []signup{owner("owner-pw-1"), attacker("attacker-pw-1")}},
		{"attacker first", 0, []signup{attacker("attacker-pw-1"), owner("owner-pw-1"), attacker("attacker-pw-2")}},
		{"attacker first, owner last", 0, []signup{attacker("attacker-pw-1"), owner("owner-pw-1")}},
		// With a cap of 1 the attacker's second signup sends the last
		// email; the owner's and the attacker's third send nothing.
		{"email cap", 1, []signup{attacker("attacker-pw-1"), attacker("attacker-pw-2"), owner("owner-pw-1"), attacker("attacker-pw-3")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(_ *Deps, cfg *Config) { cfg.MailPerAddress = tc.mailCap })
			ctx := context.Background()
			const addr = "contested@example.com"
			ids := map[int64]bool{}
			for i, s := range tc.signups {
				email := addr
				if i%2 == 1 {
					email = "Contested@Example.com"
				}
				id, err := f.svc.Signup(ctx, SignupInput{Email: email, Password: s.password})
				require.NoError(t, err, "a repeated signup answers as a new one")
				require.False(t, ids[id], "every signup answers a fresh id")
				ids[id] = true
			}
			id := f.userID(t, addr)

			got, err := f.svc.Verify(ctx, f.lastKey(t, MailVerification))
			require.NoError(t, err)
			require.Equal(t, id, got)

			for _, s := range tc.signups {
				if s.attacker {
					_, err := f.svc.Login(ctx, "", addr, s.password)
					require.Error(t, err, "the attacker's password %q opens the account", s.password)
					requireKind(t, err, apperr.KindUnauthorized, MsgInvalidCredentials)
				}
			}
			// Nor does the owner's: the server cannot tell whose signup
			// was whose, so the contest leaves no password at all.
			for _, s := range tc.signups {
				if !s.attacker {
					_, err := f.svc.Login(ctx, "", addr, s.password)
					requireKind(t, err, apperr.KindUnauthorized, MsgInvalidCredentials)
				}
			}
			// The verification sent the inbox a set-password link.
			require.NoError(t, f.svc.ResetPassword(ctx, f.lastKey(t, MailReset), "owner-pw-new"))
			res, err := f.svc.Login(ctx, "", addr, "owner-pw-new")
			require.NoError(t, err)
			require.Equal(t, id, res.UserID)
		})
	}
}

// TestSignupRepeatedSamePassword: signing up again with the same password
// (a double submit, a lost email) is no contest: the newest link verifies
// the account with that password and no set-password email is sent. An
// ordinary signup keeps its token version.
func TestSignupRepeatedSamePassword(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	for range 2 {
		_, err := f.svc.Signup(ctx, SignupInput{Email: "twice@example.com", Password: "password-1"})
		require.NoError(t, err)
	}
	require.NoError(t, f.svc.ResendVerification(ctx, "twice@example.com"))
	id := f.userID(t, "twice@example.com")
	_, err := f.svc.Verify(ctx, f.lastKey(t, MailVerification))
	require.NoError(t, err)
	res, err := f.svc.Login(ctx, "", "twice@example.com", "password-1")
	require.NoError(t, err)
	require.Equal(t, id, res.UserID)
	_, version := f.storedPassword(t, id)
	require.Zero(t, version)
	var resets int
	require.NoError(t, f.pool.QueryRow(ctx,
		`SELECT count(*) FROM river_job WHERE kind = 'account_email' AND args->>'email' = $1`, string(MailReset)).Scan(&resets))
	require.Zero(t, resets)
}
