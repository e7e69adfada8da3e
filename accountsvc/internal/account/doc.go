// Package account holds the accounts domain of accountsvc and its
// PostgreSQL store: users and their passwords, email verification keys,
// password reset keys, referral tokens, referrals and the declarative
// referral rewards, plus login brute-force protection (Redis) and the
// durable email jobs (River) that deliver verification and reset links.
//
// Secrets at rest: passwords are argon2id PHC strings (legacy sha256_crypt
// and bcrypt hashes are verified and upgraded on login); verification and
// reset keys are stored as their hex SHA-256 only. The email jobs carry a
// random nonce, never a key: the worker derives the key from the nonce with
// an HMAC under a server secret (see KeyDeriver), so a copy of the database
// alone reveals no usable link.
//
// Signup takeover: a verification link never confirms a password that
// someone other than the inbox owner may have chosen. When two signups with
// different passwords claim the same unverified address, the account keeps
// no password; verifying it mails a set-password (reset) link to the inbox.
// See Service.Signup.
//
// This package must never write HTTP responses or read echo contexts: it
// returns *apperr.Error values with the legacy public messages, and the
// accountapi package maps requests onto it. It must never log a password, a
// hash, a key or a token.
package account
