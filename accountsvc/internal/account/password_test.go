package account

import (
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

func newTestHasher(tb testing.TB) *Hasher {
	tb.Helper()
	h, err := NewHasher(DefaultArgon2, 0)
	require.NoError(tb, err)
	return h
}

func TestArgon2idPHC(t *testing.T) {
	t.Parallel()
	h := newTestHasher(t)
	enc, err := h.Hash("correct horse battery staple")
	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`), enc)
	require.LessOrEqual(t, len(enc), 128, "must fit the legacy VARCHAR(128)")

	ok, rehash := h.Verify(enc, "correct horse battery staple")
	require.True(t, ok)
	require.False(t, rehash)
	ok, _ = h.Verify(enc, "correct horse battery stapl")
	require.False(t, ok)

	// Salted: the same password hashes differently.
	enc2, err := h.Hash("correct horse battery staple")
	require.NoError(t, err)
	require.NotEqual(t, enc, enc2)

	// Stronger parameters than the hasher's still verify, and ask for a
	// rehash to the configured ones.
	strong, err := NewHasher(Argon2Params{MemoryKiB: 32768, Time: 3, Threads: 2}, 0)
	require.NoError(t, err)
	enc3, err := strong.Hash("pw-12345678")
	require.NoError(t, err)
	ok, rehash = h.Verify(enc3, "pw-12345678")
	require.True(t, ok)
	require.True(t, rehash)

	// Below the OWASP baseline is refused as configuration.
	_, err = NewHasher(Argon2Params{MemoryKiB: 4096, Time: 1, Threads: 1}, 0)
	require.Error(t, err)
}

// TestSHA256CryptSpecVectors checks the test vectors of Ulrich Drepper's
// "Unix crypt using SHA-256 and SHA-512" specification (the stored forms:
// salts truncated to 16 characters, rounds clamped to at least 1000).
func TestSHA256CryptSpecVectors(t *testing.T) {
	t.Parallel()
	h := newTestHasher(t)
	vectors := []struct{ password, hash string }{
		{"Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
		{"Hello world!", "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"},
		{"This is just a test", "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5"},
		{"a very much longer text to encrypt.  This one even stretches over morethan one line.",
			"$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1"},
		{"we have a short salt string but not a short password", "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"},
		{"a short string", "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD"},
		{"the minimum number is still observed", "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC"},
	}
	for _, v := range vectors {
		ok, rehash := h.Verify(v.hash, v.password)
		require.True(t, ok, v.hash)
		require.True(t, rehash, "legacy hashes are upgraded")
		ok, _ = h.Verify(v.hash, v.password+"x")
		require.False(t, ok, v.hash)
	}
}

func TestLegacyHashes(t *testing.T) {
	t.Parallel()
	h := newTestHasher(t)

	// A passlib sha256_crypt hash from the legacy database (password "test").
	const passlib = "$5$rounds=535000$05R.9KB6UC2kLI3w$Q/zslzx./JjkAVPTwp6th7nW5l7JU91Gte/UmIh.U78"
	ok, rehash := h.Verify(passlib, "test")
	require.True(t, ok)
	require.True(t, rehash)
	ok, _ = h.Verify(passlib, "Test")
	require.False(t, ok)

	b, err := bcrypt.GenerateFromPassword([]byte("bcrypt-password"), bcrypt.MinCost)
	require.NoError(t, err)
	ok, rehash = h.Verify(string(b), "bcrypt-password")
	require.True(t, ok)
	require.True(t, rehash)
	ok, _ = h.Verify(string(b), "bcrypt-passwore")
	require.False(t, ok)

	for _, bad := range []string{
		"", "test", "$5$", "$5$rounds=abc$salt$hash", "$argon2id$v=19$m=19456,t=2,p=1$!!!$???",
		"$argon2id$v=19$m=99999999999,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
		"$2b$04$short", strings.Repeat("x", 300),
	} {
		ok, rehash := h.Verify(bad, "test")
		require.False(t, ok, bad)
		require.False(t, rehash, bad)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	k, err := NewKeyDeriver([]byte(strings.Repeat("s", 32)))
	require.NoError(t, err)
	n, err := newNonce()
	require.NoError(t, err)
	key := k.derive(purposeVerify, n)
	require.Regexp(t, `^[0-9a-f]{96}$`, key)
	require.Equal(t, key, k.derive(purposeVerify, n))
	require.NotEqual(t, key, k.derive(purposeReset, n))
	require.Len(t, hashKey(key), 64)
	require.Equal(t, []string{hashKey(key), key}, keyCandidates(key))
	// A stored hash presented as a key matches only its own hash.
	require.Equal(t, []string{hashKey(hashKey(key))}, keyCandidates(hashKey(key)))
	_, err = NewKeyDeriver([]byte("short"))
	require.Error(t, err)
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"a@b.co":             "a@b.co",
		"  Mixed@Case.COM ":  "Mixed@Case.COM",
		"ünïcode@exämple.de": "ünïcode@exämple.de",
	}
	for in, want := range good {
		got, err := NormalizeEmail(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	for _, bad := range []string{"", "a", "a@b", "@b.co", "a@", "Name <a@b.co>", "a b@c.de", "a@b.co\x00",
		"a\u202e@b.co", "a@@b.co", "\xff@b.co", strings.Repeat("a", 120) + "@bbbb.com", "a@b.co."} {
		_, err := NormalizeEmail(bad)
		require.Error(t, err, "%q", bad)
	}

	require.Error(t, ValidatePassword("short"))
	require.Error(t, ValidatePassword(strings.Repeat("p", MaxPasswordLen+1)))
	require.NoError(t, ValidatePassword(strings.Repeat("p", MaxPasswordLen)))

	m, err := NormalizeMetadata(nil)
	require.NoError(t, err)
	require.JSONEq(t, `{}`, string(m))
	m, err = NormalizeMetadata([]byte(` {"a": [1, 2.5, "x"], "b": {"c": null}} `))
	require.NoError(t, err)
	require.JSONEq(t, `{"a": [1, 2.5, "x"], "b": {"c": null}}`, string(m))
	for _, bad := range []string{`[]`, `"x"`, `1`, `{"a": "\u0000"}`, `{"\u0000": 1}`, `{"a": 1e999}`, `{"a":`,
		`{"a":1} {}`, `{"a": ` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`} {
		_, err := NormalizeMetadata([]byte(bad))
		require.Error(t, err, bad)
	}
}

// TestConcurrentHashesBoundMemory: a burst of logins (from as many
// addresses as an attacker likes, each under its rate limit) runs at most
// the hasher's concurrency of argon2id computations at once, so the heap
// holds that many 19 MiB blocks, not one per request. Not parallel: it
// samples the process's heap.
func TestConcurrentHashesBoundMemory(t *testing.T) {
	const burst, concurrency = 16, 2
	h, err := NewHasher(DefaultArgon2, concurrency)
	require.NoError(t, err)
	stored, err := h.Hash("correct horse battery staple")
	require.NoError(t, err)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i % 3 {
			case 0:
				h.VerifyDummy("wrong")
			case 1:
				ok, _ := h.Verify(stored, "wrong")
				assert.False(t, ok)
			default:
				_, err := h.Hash("another password")
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled

	block := uint64(DefaultArgon2.MemoryKiB) << 10
	grew := peak.Load() - min(base, peak.Load())
	t.Logf("heap in use grew by %d MiB at most (%d hashes, %d at once, %d MiB each)", grew>>20, burst, concurrency, block>>20)
	// Freed blocks stay in the heap until the next GC (which runs when the
	// heap doubles), so allow twice the live blocks plus slack; without
	// the bound all 16 are live at once (over 300 MiB).
	require.Less(t, grew, (2*concurrency+4)*block, "more argon2id blocks were live at once than %d hashes need", concurrency)
}
