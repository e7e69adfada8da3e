// Package auth verifies and issues the JSON Web Tokens of the NounsAI API,
// checks them against revocation (logout deny-list in Redis, per-user token
// version in PostgreSQL), and holds the echo middleware for the JWT, the
// challenge-token and the admin-token schemes.
//
// Tokens are HS256 and keep the legacy claim `id` (the user id), so tokens
// issued by the old Flask system stay valid. Claims reach handlers through
// the request context (FromContext, UserID), never through echo.Context.
//
// This package must never write HTTP statuses or bodies itself: it returns
// *apperr.Error values and the shared error handler renders them. It must
// never log or return a token or a secret.
package auth
