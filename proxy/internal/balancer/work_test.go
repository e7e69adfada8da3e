package balancer_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

func TestEstimatePrefix(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("A", 100_000)
	full := `{"inference_mode":"Text to Image","samples":2,"steps":50,"aspect_ratio":"512:512","base_64":"` + big + `"}`
	for _, tc := range []struct {
		name     string
		path     string
		prefix   string
		complete bool
		want     float64
	}{
		{"fields before a large image", "/images", full[:64<<10], false, 2 * 2},
		{"the whole body", "/images", full, true, 2 * 2},
		{"image first: defaults", "/images", `{"base_64":"` + big[:1000], false, 1 * 2.25},
		{"fields after the image are not seen", "/images", `{"samples":1,"base_64":"` + big[:1000], false, 1 * 2.25},
		{"a number at the end of the prefix may be cut short", "/images", `{"samples":1,"steps":15`, false, 1 * 2.25},
		{"the same number in a complete body counts", "/images", `{"samples":1,"steps":15}`, true, 1 * 0.6 * 2.25},
		{"a truncated key", "/images", `{"samples":2,"ste`, false, 2 * 2.25},
		{"keys match case-insensitively; the last duplicate wins", "/images", `{"Samples":3,"samples":1,"steps":25}`, true, 2.25},
		{"nested fields are not top-level", "/images", `{"extra":{"samples":9},"samples":1}`, true, 2.25},
		{"wrong types leave defaults", "/images", `{"samples":[1],"inference_mode":7}`, true, 1 * 2.25},
		{"syntax error keeps what came before", "/images", `{"samples":1,"steps":,`, true, 2.25},
		{"not json", "/images", `<html>`, true, 1 * 2.25},
		{"empty", "/images", ``, true, 1 * 2.25},
		{"fixed-cost route ignores the body", "/upscale", `{"base_64":"` + big[:10], false, 4},
	} {
		got := balancer.EstimatePrefix(gpuroute.Lookup("POST", tc.path), []byte(tc.prefix), tc.complete)
		require.InDelta(t, tc.want, got, 1e-9, tc.name)
	}
}
