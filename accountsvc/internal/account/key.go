package account

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
)

// KeyHexLen is the length of verification, reset and referral keys: 48
// random bytes in hex, as the legacy token_hex(48).
const KeyHexLen = 96

// keyPurpose separates the keys derived for each kind of link.
type keyPurpose string

const (
	purposeVerify keyPurpose = "verify"
	purposeReset  keyPurpose = "reset"
)

// KeyDeriver turns a random nonce into a link key: the key is the hex
// HMAC-SHA384 of purpose and nonce under a server secret (96 hex
// characters). Only the nonce is stored in the email job and only the
// SHA-256 of the key in the user's row, so neither the database nor the job
// queue alone yields a working link. It is safe for concurrent use.
type KeyDeriver struct {
	secret []byte
}

// NewKeyDeriver returns a deriver using secret (at least 32 bytes).
func NewKeyDeriver(secret []byte) (*KeyDeriver, error) {
	if len(secret) < 32 {
		return nil, errors.New("link key secret must be at least 32 bytes")
	}
	return &KeyDeriver{secret: append([]byte(nil), secret...)}, nil
}

// newNonce returns 32 random bytes in hex.
func newNonce() (string, error) { return randomHex(32) }

// derive returns the key for purpose and nonce.
func (k *KeyDeriver) derive(purpose keyPurpose, nonce string) string {
	m := hmac.New(sha512.New384, k.secret)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(nonce))
	return hex.EncodeToString(m.Sum(nil))
}

// randomHex returns n random bytes in hex.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// hashKey is what the database stores for a key: its hex SHA-256.
func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// keyCandidates returns the stored values a presented key may match: its
// hash, and the key itself when it has the shape of a legacy plaintext key
// (96 lower-case hex characters; stored hashes are 64 characters, so a
// leaked hash can never be presented as a key).
func keyCandidates(key string) []string {
	c := []string{hashKey(key)}
	if isLegacyKey(key) {
		c = append(c, key)
	}
	return c
}

func isLegacyKey(s string) bool {
	if len(s) != KeyHexLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}
