package media_test

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/media"
)

// Check estimates the decoder's allocation from the header and refuses an
// image over MaxDecodedBytes before decoding any pixel.
func TestCheckDecodedBytes(t *testing.T) {
	t.Parallel()
	encode := func(img image.Image) []byte {
		var b bytes.Buffer
		require.NoError(t, png.Encode(&b, img))
		return b.Bytes()
	}
	r := image.Rect(0, 0, 64, 32)
	pal := image.NewPaletted(r, color.Palette{color.Black, color.White})
	for _, tc := range []struct {
		name string
		img  image.Image
		bpp  int64
	}{
		{"gray", image.NewGray(r), 1},
		{"gray16", image.NewGray16(r), 2},
		{"nrgba", image.NewNRGBA(r), 4},
		{"nrgba64", image.NewNRGBA64(r), 8},
		{"paletted", pal, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := encode(tc.img)
			info, err := media.Check(data, media.Limits{})
			require.NoError(t, err)
			require.Equal(t, 64*32*tc.bpp, info.DecodedBytes)
			_, err = media.Check(data, media.Limits{MaxDecodedBytes: 64*32*tc.bpp - 1})
			require.True(t, apperr.Is(err, apperr.KindInvalid), "over the bound: %v", err)
			_, err = media.Check(data, media.Limits{MaxDecodedBytes: 64 * 32 * tc.bpp})
			require.NoError(t, err)
		})
	}
}
