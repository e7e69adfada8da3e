package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPrefersJPEG(t *testing.T) {
	t.Parallel()
	tests := []struct {
		accept string
		want   bool
	}{
		{"", false},
		{"*/*", false},
		{"image/jpeg", true},
		{"image/png", false},
		{"image/jpeg, image/png", false},
		{"image/jpeg, image/png;q=0.5", true},
		{"image/*;q=0.8, image/jpeg", true},
		{"image/png;q=0.9, image/jpeg;q=0.8", false},
		{"text/html, image/jpeg;q=0.9, */*;q=0.1", true},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, prefersJPEG(tt.accept), tt.accept)
	}
}

func TestBodyNumbers(t *testing.T) {
	t.Parallel()
	var b body
	require.NoError(t, json.Unmarshal([]byte(`{"a": 3, "b": "4", "c": " 5.9 ", "d": "x", "e": [1], "f": null, "g": "Infinity", "h": 1e300}`), &b))
	n, err := b.smallInt("a", 0)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	n, err = b.smallInt("b", 0)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	n, err = b.smallInt("c", 0)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	n, err = b.smallInt("f", 7)
	require.NoError(t, err)
	require.Equal(t, 7, n, "null means absent")
	n, err = b.smallInt("missing", 9)
	require.NoError(t, err)
	require.Equal(t, 9, n)
	for _, f := range []string{"d", "e", "g", "h"} {
		_, err := b.smallInt(f, 0)
		require.Error(t, err, f)
	}
}

func TestDecodeBase64(t *testing.T) {
	t.Parallel()
	data := []byte("\x89PNG some bytes \xff\xfe")
	std := base64.StdEncoding.EncodeToString(data)
	for _, s := range []string{std, "data:image/png;base64," + std, base64.RawURLEncoding.EncodeToString(data), std[:8] + "\n" + std[8:]} {
		got, err := decodeBase64("f", s, 1024)
		require.NoError(t, err, s)
		require.Equal(t, data, got)
	}
	_, err := decodeBase64("f", "@@@", 1024)
	require.Error(t, err)
	_, err = decodeBase64("f", std, 4)
	require.Error(t, err)
}

func TestParseAspectRatio(t *testing.T) {
	t.Parallel()
	w, h, err := parseAspectRatio(" 768 : 512 ")
	require.NoError(t, err)
	require.Equal(t, []int{768, 512}, []int{w, h})
	for _, s := range []string{"", "768", "a:b", "768x512", "1:2:3"} {
		_, _, err := parseAspectRatio(s)
		require.Error(t, err, s)
	}
}
