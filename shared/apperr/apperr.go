// Package apperr holds the application's error kinds. An *Error carries a
// kind (which decides the HTTP status), a public message safe to show to a
// client, and a hidden cause for the logs.
//
// This package must never import HTTP frameworks or log anything; the
// mapping to HTTP lives in package web, in one place.
package apperr

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Kind classifies an error. The zero value is KindInternal.
type Kind int

// The error kinds. Unknown errors are KindInternal.
const (
	KindInternal Kind = iota
	KindInvalid
	KindUnauthorized
	KindForbidden
	KindNotFound
	KindConflict
	KindInsufficientCredits
	KindTooManyRequests
	KindUnavailable
	KindUnsupported
	KindBadGateway
	KindTimeout
	KindTooLarge
	KindMethodNotAllowed
)

var kindNames = [...]string{
	KindInternal: "internal", KindInvalid: "invalid", KindUnauthorized: "unauthorized", KindForbidden: "forbidden",
	KindNotFound: "not_found", KindConflict: "conflict", KindInsufficientCredits: "insufficient_credits",
	KindTooManyRequests: "too_many_requests", KindUnavailable: "unavailable", KindUnsupported: "unsupported",
	KindBadGateway: "bad_gateway", KindTimeout: "timeout", KindTooLarge: "too_large", KindMethodNotAllowed: "method_not_allowed",
}

// String returns the kind's snake_case name.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "internal"
}

// Status returns the HTTP status code for the kind.
func (k Kind) Status() int {
	switch k {
	case KindInvalid:
		return http.StatusBadRequest
	case KindUnauthorized:
		return http.StatusUnauthorized
	case KindForbidden:
		return http.StatusForbidden
	case KindNotFound:
		return http.StatusNotFound
	case KindConflict:
		return http.StatusConflict
	case KindInsufficientCredits:
		return http.StatusPaymentRequired
	case KindTooManyRequests:
		return http.StatusTooManyRequests
	case KindUnavailable:
		return http.StatusServiceUnavailable
	case KindUnsupported:
		return http.StatusNotImplemented
	case KindBadGateway:
		return http.StatusBadGateway
	case KindTimeout:
		return http.StatusGatewayTimeout
	case KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case KindMethodNotAllowed:
		return http.StatusMethodNotAllowed
	default:
		return http.StatusInternalServerError
	}
}

// Error is an application error. Message is public; Err is the hidden cause
// and is never sent to clients.
type Error struct {
	Kind    Kind
	Message string
	// Key is the JSON key of the message: "message" (default) or the
	// legacy "error" used by some not-found and 413 bodies.
	Key string
	// Fields are extra JSON fields of the body, e.g. credits and required.
	Fields map[string]any
	// RetryAfter, when positive, is sent as the Retry-After header.
	RetryAfter time.Duration
	// Err is the cause, for logs only. May be nil.
	Err error
}

// Error implements error. It includes the cause, so it is for logs only.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// WithKey returns a copy whose message is sent under key instead of "message".
func (e *Error) WithKey(key string) *Error {
	c := *e
	c.Key = key
	return &c
}

// WithField returns a copy with an extra JSON field in the body.
func (e *Error) WithField(key string, value any) *Error {
	c := *e
	c.Fields = make(map[string]any, len(e.Fields)+1)
	for k, v := range e.Fields {
		c.Fields[k] = v
	}
	c.Fields[key] = value
	return &c
}

// WithRetryAfter returns a copy that asks clients to retry after d.
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	c := *e
	c.RetryAfter = d
	return &c
}

// New returns an error of kind with a public message.
func New(kind Kind, msg string) *Error { return &Error{Kind: kind, Message: msg} }

// Wrap returns an error of kind with a public message and a hidden cause.
func Wrap(kind Kind, msg string, cause error) *Error {
	return &Error{Kind: kind, Message: msg, Err: cause}
}

// Constructors for each kind; msg is public.

// Invalid reports bad input (400).
func Invalid(msg string) *Error { return New(KindInvalid, msg) }

// Unauthorized reports missing or bad credentials (401).
func Unauthorized(msg string) *Error { return New(KindUnauthorized, msg) }

// Forbidden reports an authenticated caller lacking permission (403).
func Forbidden(msg string) *Error { return New(KindForbidden, msg) }

// NotFound reports a missing resource (404).
func NotFound(msg string) *Error { return New(KindNotFound, msg) }

// Conflict reports a state conflict (409).
func Conflict(msg string) *Error { return New(KindConflict, msg) }

// TooManyRequests reports a rate limit or quota breach (429).
func TooManyRequests(msg string) *Error { return New(KindTooManyRequests, msg) }

// Unavailable reports temporary overload or a missing dependency (503).
func Unavailable(msg string) *Error { return New(KindUnavailable, msg) }

// Unsupported reports an operation that is not offered (501).
func Unsupported(msg string) *Error { return New(KindUnsupported, msg) }

// BadGateway reports an upstream failure (502).
func BadGateway(msg string) *Error { return New(KindBadGateway, msg) }

// Timeout reports an upstream timeout (504).
func Timeout(msg string) *Error { return New(KindTimeout, msg) }

// TooLarge reports an oversized body (413).
func TooLarge(msg string) *Error { return New(KindTooLarge, msg) }

// InsufficientCredits reports a short balance: 402 with the legacy-style body
// {"message": "Insufficient credits", "credits": have, "required": need}.
func InsufficientCredits(have, need int64) *Error {
	return &Error{Kind: KindInsufficientCredits, Message: "Insufficient credits",
		Fields: map[string]any{"credits": have, "required": need}}
}

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// KindOf returns the kind of err: the kind of the first *Error in its chain,
// or Internal.
func KindOf(err error) Kind {
	if e, ok := As(err); ok {
		return e.Kind
	}
	return KindInternal
}

// Is reports whether err is an *Error of kind.
func Is(err error, kind Kind) bool {
	e, ok := As(err)
	return ok && e.Kind == kind
}
