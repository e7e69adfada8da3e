package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/web"
)

// body is a legacy JSON object body, read field by field with the legacy
// coercions (numbers may be numeric strings, as Python's int()/float()
// accepted them). Every problem is a 400 naming the field.
type body map[string]json.RawMessage

// readBody decodes the request body as a JSON object.
func readBody(c echo.Context) (body, error) {
	var b body
	if err := web.DecodeJSON(c, &b); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, apperr.Invalid("Request body must be a JSON object")
	}
	return b, nil
}

func fieldError(field, msg string) error {
	return apperr.Invalid(msg).WithField("field", field)
}

// has reports whether field is present and not null.
func (b body) has(field string) bool {
	raw, ok := b[field]
	return ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// str returns a string field; a missing or null field is "" (an error when
// required).
func (b body) str(field string, required bool) (string, error) {
	if !b.has(field) {
		if required {
			return "", fieldError(field, fmt.Sprintf("%s is required", field))
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(b[field], &s); err != nil {
		return "", fieldError(field, fmt.Sprintf("%s must be a string", field))
	}
	return s, nil
}

// number returns a numeric field (a JSON number or a numeric string) and
// whether it was present. NaN and infinities are refused.
func (b body) number(field string) (float64, bool, error) {
	if !b.has(field) {
		return 0, false, nil
	}
	raw := bytes.TrimSpace(b[field])
	text := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, true, fieldError(field, fmt.Sprintf("%s must be a number", field))
		}
		text = strings.TrimSpace(s)
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, true, fieldError(field, fmt.Sprintf("%s must be a number", field))
	}
	return f, true, nil
}

// integer returns an integer field (fractions are truncated, as int() did
// for floats), def when absent. Values beyond ±2^53 are refused.
func (b body) integer(field string, def int64) (int64, error) {
	f, ok, err := b.number(field)
	if err != nil || !ok {
		return def, err
	}
	if math.Abs(f) > 1<<53 {
		return 0, fieldError(field, fmt.Sprintf("%s is out of range", field))
	}
	return int64(f), nil
}

// smallInt is integer bounded to ±1e6, for counts and sizes (so that the
// conversion to int can never overflow and range errors read well).
func (b body) smallInt(field string, def int) (int, error) {
	n, err := b.integer(field, int64(def))
	if err != nil {
		return 0, err
	}
	if n < -1_000_000 || n > 1_000_000 {
		return 0, fieldError(field, fmt.Sprintf("%s is out of range", field))
	}
	return int(n), nil
}

// image returns a base64 image field (a data URL or bare base64: everything
// up to the first comma is stripped, as the legacy did), decoded. The
// encoded length is checked against maxBytes before decoding.
func (b body) image(field string, required bool, maxBytes int) ([]byte, error) {
	s, err := b.str(field, required)
	if err != nil || s == "" {
		if err == nil && required {
			err = fieldError(field, fmt.Sprintf("%s is required", field))
		}
		return nil, err
	}
	return decodeBase64(field, s, maxBytes)
}

// decodeBase64 decodes a data URL or bare base64 (standard or URL alphabet,
// padded or not, white space ignored) of at most maxBytes decoded bytes.
func decodeBase64(field, s string, maxBytes int) ([]byte, error) {
	if i := strings.IndexByte(s, ','); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > base64.StdEncoding.EncodedLen(maxBytes)+64 {
		return nil, apperr.TooLarge(fmt.Sprintf("%s must decode to at most %d bytes", field, maxBytes)).WithField("field", field)
	}
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\n', '\r', '\t':
			return -1
		}
		return r
	}, s)
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	data, err := enc.DecodeString(s)
	if err != nil || len(data) == 0 {
		return nil, fieldError(field, fmt.Sprintf("%s is not valid base64", field))
	}
	if len(data) > maxBytes {
		return nil, apperr.TooLarge(fmt.Sprintf("%s must decode to at most %d bytes", field, maxBytes)).WithField("field", field)
	}
	return data, nil
}
