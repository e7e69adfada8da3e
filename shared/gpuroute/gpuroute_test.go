package gpuroute_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/gpuroute"
)

func TestLookupFindsEveryRouteAndNothingElse(t *testing.T) {
	t.Parallel()
	names := map[string]bool{}
	for _, r := range gpuroute.All() {
		require.NotEmpty(t, r.Method(), r)
		require.NotEmpty(t, r.Path(), r)
		require.Equal(t, r, gpuroute.Lookup(r.Method(), r.Path()), r.Path())
		require.False(t, names[r.String()], "duplicate label %s", r)
		names[r.String()] = true
	}
	require.Len(t, gpuroute.All(), int(gpuroute.Count)-1)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/images"},     // the library list, an account route
		{"POST", "/images/"},   // exact paths only
		{"POST", "/login"},     // an account route
		{"DELETE", "/models"},  // wrong method
		{"POST", "/v1/images"}, // not a prefix match
		{"", ""},               // None's empty row matches nothing
	} {
		require.Equal(t, gpuroute.None, gpuroute.Lookup(tc.method, tc.path), "%s %s", tc.method, tc.path)
	}
	require.Equal(t, "account", gpuroute.None.String())
	require.Equal(t, "account", gpuroute.Route(200).String())
}

func TestCosts(t *testing.T) {
	t.Parallel()
	// POST /images is the only route whose work depends on its fields.
	for _, r := range gpuroute.All() {
		if r == gpuroute.Images {
			require.Zero(t, r.FixedCost())
		} else {
			require.Positive(t, r.FixedCost(), r)
		}
	}
	// Only synchronous GPU work teaches a host's speed.
	require.False(t, gpuroute.Generations.MeasuresWork())
	require.False(t, gpuroute.Models.MeasuresWork())
	require.False(t, gpuroute.None.MeasuresWork())
	require.True(t, gpuroute.Images.MeasuresWork())

	// One unit is one Text to Image sample of 25 steps at 512×512.
	require.InDelta(t, 1, gpuroute.Units(gpuroute.ModeTxt2Img, 1, gpuroute.RefSteps, 512, 512, 0), 1e-12)
	for _, tc := range []struct {
		mode                 gpuroute.Mode
		samples, steps, w, h float64
		strength, want       float64
	}{
		{gpuroute.ModeTxt2Img, 4, 50, 768, 768, 0, 4 * 2 * 2.25},
		{gpuroute.ModeImg2Img, 1, 25, 512, 512, 0.5, 0.5},
		{gpuroute.ModeImg2Img, 1, 25, 512, 512, 0, 0.1}, // strength clamped to [0.1, 1]
		{gpuroute.ModeImg2Img, 1, 25, 512, 512, 7, 1},
		{gpuroute.ModeDepth, 1, 25, 512, 512, 0, 1.5},
		{gpuroute.ModeMask, 0, 0, 512, 512, 0, 1.1 / 25}, // samples and steps count at least 1
		{"", 1, 25, 512, 512, 0, 1},                      // unknown modes cost as Text to Image
	} {
		require.InDelta(t, tc.want, gpuroute.Units(tc.mode, tc.samples, tc.steps, tc.w, tc.h, tc.strength), 1e-12, tc.mode)
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]gpuroute.Mode{
		"Text to Image":           gpuroute.ModeTxt2Img,
		"text to image":           gpuroute.ModeTxt2Img,
		"  controlnet   DEPTH ":   gpuroute.ModeDepth,
		"Mask":                    gpuroute.ModeMask,
		"Pix to Pix":              gpuroute.ModePix2Pix,
		"ControlNet Segmentation": gpuroute.ModeSegmentation,
	} {
		got, ok := gpuroute.ParseMode(in)
		require.True(t, ok, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "Text2Image", "image"} {
		_, ok := gpuroute.ParseMode(in)
		require.False(t, ok, in)
	}
}
