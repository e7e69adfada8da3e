package account

import (
	"context"
	"encoding/json"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/email/emailtest"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// fakeClock is a settable test clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	svc   *Service
	pool  *pgxpool.Pool
	keys  *KeyDeriver
	clock *fakeClock
}

// newFixture builds a Service on a fresh database. The mailer is not
// started: tests read the queued jobs instead of the outbox. opts may
// adjust the dependencies and configuration before the Service is built.
func newFixture(tb testing.TB, opts ...func(d *Deps, cfg *Config)) *fixture {
	tb.Helper()
	pool := dbtest.New(tb)
	rc, prefix := dbtest.Redis(tb)
	clk := &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	h, err := NewHasher(DefaultArgon2, 0)
	require.NoError(tb, err)
	keys, err := NewKeyDeriver([]byte(strings.Repeat("k", 32)))
	require.NoError(tb, err)
	mailer, err := NewMailer(pool, email.NewOutbox(tb.TempDir(), mail.Address{Address: "admin@nounsai.wtf"}), keys,
		MailConfig{BaseURL: "http://app.test", VerifyTTL: DefaultVerifyTTL, ResetTTL: DefaultResetTTL}, zap.NewNop())
	require.NoError(tb, err)
	d := Deps{
		Pool: pool, Hasher: h, Keys: keys, Mailer: mailer,
		Ledger:      credits.NewLedger(pool, credits.Options{Now: clk.Now}),
		Issuer:      auth.Issuer{Secret: []byte("test-secret-test-secret"), Now: clk.Now},
		Lockout:     NewLockout(rc, prefix, LockoutConfig{}),
		MailLimiter: ratelimit.New(rc, prefix, ratelimit.Options{}),
	}
	cfg := Config{Now: clk.Now}
	for _, o := range opts {
		o(&d, &cfg)
	}
	svc := NewService(d, cfg)
	return &fixture{svc: svc, pool: pool, keys: keys, clock: clk}
}

// lastKey derives the key of the newest queued email of kind.
func (f *fixture) lastKey(tb testing.TB, kind MailKind) string {
	tb.Helper()
	var raw []byte
	err := f.pool.QueryRow(context.Background(),
		`SELECT args FROM river_job WHERE kind = 'account_email' AND args->>'email' = $1 ORDER BY id DESC LIMIT 1`,
		string(kind)).Scan(&raw)
	require.NoError(tb, err)
	var a MailArgs
	require.NoError(tb, json.Unmarshal(raw, &a))
	require.NotContains(tb, string(raw), "key", "jobs carry a nonce, never a key")
	p := purposeVerify
	if kind == MailReset {
		p = purposeReset
	}
	return f.keys.derive(p, a.Nonce)
}

func requireKind(tb testing.TB, err error, kind apperr.Kind, msg string) {
	tb.Helper()
	e, ok := apperr.As(err)
	require.True(tb, ok, "%v", err)
	require.Equal(tb, kind, e.Kind)
	require.Equal(tb, msg, e.Message)
}

func TestResetKeyLifetime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id, err := f.svc.Signup(ctx, SignupInput{Email: "r@example.com", Password: "password-1"})
	require.NoError(t, err)

	t0 := f.clock.Now()
	require.NoError(t, f.svc.RequestReset(ctx, "r@example.com"))
	key := f.lastKey(t, MailReset)

	f.clock.Add(59 * time.Minute)
	exp, err := f.svc.CheckReset(ctx, key)
	require.NoError(t, err)
	require.Equal(t, t0.Add(time.Hour), exp)

	f.clock.Add(time.Minute) // exactly one hour: expired
	_, err = f.svc.CheckReset(ctx, key)
	requireKind(t, err, apperr.KindInvalid, MsgInvalidResetKey)
	requireKind(t, f.svc.ResetPassword(ctx, key, "password-2"), apperr.KindInvalid, MsgResetKeyNotFound)

	// A fresh key works once.
	require.NoError(t, f.svc.RequestReset(ctx, "r@example.com"))
	key = f.lastKey(t, MailReset)
	f.clock.Add(30 * time.Minute)
	require.NoError(t, f.svc.ResetPassword(ctx, key, "password-2"))
	requireKind(t, f.svc.ResetPassword(ctx, key, "password-3"), apperr.KindInvalid, MsgResetKeyNotFound)

	var version int
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT token_version FROM users WHERE id = $1`, id).Scan(&version))
	require.Equal(t, 1, version, "the reset bumped the token version")
}

// TestLegacyPlaintextKeys: keys written by the legacy system (plaintext,
// no expiry column) are honoured once within the same lifetimes, counted
// from the row's created_at.
func TestLegacyPlaintextKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	now := f.clock.Now()
	legacyKey := func(c byte) string { return strings.Repeat(string(c), KeyHexLen) }

	var fresh, stale int64
	const ins = `INSERT INTO users (email, password, verify_key, metadata, created_at) VALUES ($1, 'x', $2, '{}', $3) RETURNING id`
	require.NoError(t, f.pool.QueryRow(ctx, ins, "fresh@example.com", legacyKey('a'), now.Add(-6*24*time.Hour)).Scan(&fresh))
	require.NoError(t, f.pool.QueryRow(ctx, ins, "stale@example.com", legacyKey('b'), now.Add(-8*24*time.Hour)).Scan(&stale))

	got, err := f.svc.Verify(ctx, legacyKey('a'))
	require.NoError(t, err)
	require.Equal(t, fresh, got)
	_, err = f.svc.Verify(ctx, legacyKey('a'))
	requireKind(t, err, apperr.KindInvalid, MsgInvalidVerifyKey)
	_, err = f.svc.Verify(ctx, legacyKey('b'))
	requireKind(t, err, apperr.KindInvalid, MsgInvalidVerifyKey)

	const rec = `INSERT INTO password_recovery (user_id, reset_key, created_at) VALUES ($1, $2, $3)`
	_, err = f.pool.Exec(ctx, rec, fresh, legacyKey('c'), now.Add(-10*time.Minute))
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, rec, stale, legacyKey('d'), now.Add(-2*time.Hour))
	require.NoError(t, err)
	_, err = f.svc.CheckReset(ctx, legacyKey('c'))
	require.NoError(t, err)
	_, err = f.svc.CheckReset(ctx, legacyKey('d'))
	requireKind(t, err, apperr.KindInvalid, MsgInvalidResetKey)
	require.NoError(t, f.svc.ResetPassword(ctx, legacyKey('c'), "password-new"))
	requireKind(t, f.svc.ResetPassword(ctx, legacyKey('c'), "password-new"), apperr.KindInvalid, MsgResetKeyNotFound)

	// The hash of a key is not a key.
	require.NoError(t, f.svc.RequestReset(ctx, "fresh@example.com"))
	_, err = f.svc.CheckReset(ctx, hashKey(f.lastKey(t, MailReset)))
	requireKind(t, err, apperr.KindInvalid, MsgInvalidResetKey)
}

func TestVerifyKeyLifetime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id, err := f.svc.Signup(ctx, SignupInput{Email: "v@example.com", Password: "password-1"})
	require.NoError(t, err)
	key := f.lastKey(t, MailVerification)

	f.clock.Add(DefaultVerifyTTL)
	_, err = f.svc.Verify(ctx, key)
	requireKind(t, err, apperr.KindInvalid, MsgInvalidVerifyKey)

	// Resend issues a new key (the old one stays dead).
	require.NoError(t, f.svc.ResendVerification(ctx, "V@EXAMPLE.COM"))
	fresh := f.lastKey(t, MailVerification)
	require.NotEqual(t, key, fresh)
	got, err := f.svc.Verify(ctx, fresh)
	require.NoError(t, err)
	require.Equal(t, id, got)

	// A missing reward rule never fails a verification (legacy C3).
	_, err = f.pool.Exec(ctx, `UPDATE reward_rules SET enabled = FALSE`)
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, `UPDATE users SET referral_token = 'tok' WHERE id = $1`, id)
	require.NoError(t, err)
	_, err = f.svc.Signup(ctx, SignupInput{Email: "w@example.com", Password: "password-1", ReferralToken: "tok"})
	require.NoError(t, err)
	_, err = f.svc.Verify(ctx, f.lastKey(t, MailVerification))
	require.NoError(t, err)
}

// TestEmailRetried: a failed send (SendGrid answering 500) is retried by
// the queue until it goes out, so the account can always be verified.
func TestEmailRetried(t *testing.T) {
	t.Parallel()
	pool := dbtest.New(t)
	fake := emailtest.NewSendGrid(t, "SG.test-key")
	fake.FailNext(2)
	keys, err := NewKeyDeriver([]byte(strings.Repeat("k", 32)))
	require.NoError(t, err)
	sender := email.NewSendGrid("SG.test-key", fake.URL, mail.Address{Address: "admin@nounsai.wtf"}, nil)
	m, err := NewMailer(pool, sender, keys, MailConfig{BaseURL: "http://app.test", VerifyTTL: DefaultVerifyTTL,
		ResetTTL: DefaultResetTTL, RetryBase: 10 * time.Millisecond}, zap.NewNop())
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, m.Start(ctx))
	t.Cleanup(func() { _ = m.Stop(context.Background()) })

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, m.enqueue(ctx, tx, MailArgs{Email: MailVerification, To: "retry@example.com", Nonce: "n"}))
	require.NoError(t, tx.Commit(ctx))

	require.Eventually(t, func() bool { return len(fake.Mails()) == 1 }, 20*time.Second, 50*time.Millisecond)
	got := fake.Mails()[0]
	require.Equal(t, "NounsAI Playground Verification", got.Subject)
	require.Equal(t, "retry@example.com", got.Personalizations[0].To[0].Email)
	var attempts int
	require.Eventually(t, func() bool {
		err := pool.QueryRow(ctx, `SELECT attempt FROM river_job WHERE kind = 'account_email' AND state = 'completed'`).Scan(&attempts)
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)
	require.Equal(t, 3, attempts)
}

// storedPassword returns the user's password hash and token version.
func (f *fixture) storedPassword(tb testing.TB, id int64) (string, int) {
	tb.Helper()
	var (
		hash    string
		version int
	)
	err := f.pool.QueryRow(context.Background(), `SELECT password, token_version FROM users WHERE id = $1`, id).Scan(&hash, &version)
	require.NoError(tb, err)
	return hash, version
}

// userID returns the id of the account of addr.
func (f *fixture) userID(tb testing.TB, addr string) int64 {
	tb.Helper()
	var id int64
	require.NoError(tb, f.pool.QueryRow(context.Background(), `SELECT id FROM users WHERE email = $1`, addr).Scan(&id))
	return id
}

// TestLoginFailureFloor: every failed login takes at least the floor, so
// the time tells neither an unknown address nor a slow legacy hash
// (sha256_crypt, 535000 rounds) from a wrong argon2id password.
func TestLoginFailureFloor(t *testing.T) {
	t.Parallel()
	// A floor well above what any check costs, even under -race, so that
	// only the padding can reach it.
	const floor = time.Second
	f := newFixture(t, func(_ *Deps, cfg *Config) { cfg.LoginFailureFloor = floor })
	ctx := context.Background()
	const legacy = "$5$rounds=535000$05R.9KB6UC2kLI3w$Q/zslzx./JjkAVPTwp6th7nW5l7JU91Gte/UmIh.U78"
	_, err := f.pool.Exec(ctx, `INSERT INTO users (email, password, is_verified, metadata) VALUES ('old@example.com', $1, TRUE, '{}')`, legacy)
	require.NoError(t, err)
	_, err = f.svc.Signup(ctx, SignupInput{Email: "new@example.com", Password: "password-new"})
	require.NoError(t, err)
	_, err = f.svc.Verify(ctx, f.lastKey(t, MailVerification))
	require.NoError(t, err)

	for _, c := range []struct{ email, password string }{
		{"ghost@example.com", "wrong-password"},
		{"old@example.com", "wrong-password"},
		{"new@example.com", "wrong-password"},
		{"not an address", "wrong-password"},
	} {
		start := time.Now()
		_, err := f.svc.Login(ctx, "", c.email, c.password)
		took := time.Since(start)
		requireKind(t, err, apperr.KindUnauthorized, MsgInvalidCredentials)
		require.GreaterOrEqual(t, took, floor, c.email)
	}

	// A successful login is not padded: with a floor of an hour it still
	// answers in far less (the bound is loose so that a loaded machine
	// cannot fail it).
	g := newFixture(t, func(_ *Deps, cfg *Config) { cfg.LoginFailureFloor = time.Hour })
	_, err = g.svc.Signup(ctx, SignupInput{Email: "new@example.com", Password: "password-new"})
	require.NoError(t, err)
	_, err = g.svc.Verify(ctx, g.lastKey(t, MailVerification))
	require.NoError(t, err)
	start := time.Now()
	_, err = g.svc.Login(ctx, "", "new@example.com", "password-new")
	require.NoError(t, err)
	require.Less(t, time.Since(start), 10*time.Minute, "a successful login is not padded")

	// A cancelled request does not wait out the floor.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	start = time.Now()
	padUntil(cctx, start, time.Hour)
	require.Less(t, time.Since(start), 10*time.Minute)
}

// TestProfilePasswordLockout: wrong current passwords on a profile update
// count as failed logins from the client's address; once that address is
// locked out, neither the right current password nor a login from it gets
// through, while a login from another address does.
func TestProfilePasswordLockout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id := f.verifiedUser(t, "pl@example.com", "password-1")

	update := func(current string) error {
		next := "password-2"
		_, err := f.svc.UpdateProfile(ctx, id, UpdateInput{Password: &next, CurrentPassword: &current, IP: "192.0.2.9"})
		return err
	}
	for range DefaultAccountIPLockout.Free + 1 {
		requireKind(t, update("wrong-password"), apperr.KindInvalid, MsgWrongPassword)
	}
	err := update("password-1")
	requireKind(t, err, apperr.KindTooManyRequests, MsgTooManyFailures)
	e, _ := apperr.As(err)
	require.Positive(t, e.RetryAfter)
	_, err = f.svc.Login(ctx, "192.0.2.9", "pl@example.com", "password-1")
	requireKind(t, err, apperr.KindTooManyRequests, MsgTooManyFailures)
	hash, version := f.storedPassword(t, id)
	ok, _ := f.svc.hasher.Verify(hash, "password-1")
	require.True(t, ok, "the password is unchanged")
	require.Zero(t, version)

	_, err = f.svc.Login(ctx, "198.51.100.1", "pl@example.com", "password-1")
	require.NoError(t, err, "another address is not locked out")
}
