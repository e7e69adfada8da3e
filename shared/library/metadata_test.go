package library_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/library"
)

func TestPublicMetadata(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("A", 3000)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not an object", `[1,2]`, `{}`},
		{"not JSON", `{`, `{}`},
		{"null", `null`, `{}`},
		{"plain keys stay", `{"prompt":"a noun","steps":30,"seed":12345678901234567890}`,
			`{"prompt":"a noun","steps":30,"seed":12345678901234567890}`},
		{"private keys at the top", `{"prompt":"p","base_64":"x","Mask":"m","email":"a@b","Authorization":"t"}`, `{"prompt":"p"}`},
		{"a video frame hides its video", `{"user_uploaded":true,"video_cdn_id":"9d2f","video_duration":2}`,
			`{"user_uploaded":true,"video_duration":2}`},
		{"any object reference", `{"audio_cdn_id":"a","cdn_id":"c","Start_Frame_CDN_ID":"s","keep":1}`, `{"keep":1}`},
		{"data URLs and long strings, whatever the key", `{"init":"data:image/png;base64,BBB","x":" DATA:x","big":"` + long + `","ok":"fine"}`,
			`{"ok":"fine"}`},
		{"nested objects", `{"info":{"traits":{"head":"cat"},"video_cdn_id":"v","inner":{"mask":"m","url":"data:,x"}}}`,
			`{"info":{"inner":{},"traits":{"head":"cat"}}}`},
		{"lists", `{"frames":["data:image/png;base64,CCC","ok",{"video_cdn_id":"v","n":1},["data:,y",2]]}`,
			`{"frames":["ok",{"n":1},[2]]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.JSONEq(t, tc.want, string(library.PublicMetadata([]byte(tc.in))))
		})
	}
}
