// Package media checks and transforms user media: image headers are checked
// against size limits before any pixel is decoded, images are decoded with
// those limits, encoded as PNG and thumbnailed; uploads are hashed (SHA-256)
// and sniffed by content; filenames are sanitised; and ffprobe/ffmpeg read a
// video's duration and its first and last frames.
//
// Errors caused by the input are *apperr.Error of kind Invalid with a
// message fit for the client. This package must never touch storage, the
// database or the network.
package media

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif"  // register the GIF decoder
	_ "image/jpeg" // register the JPEG decoder
	_ "image/png"  // register the PNG decoder
	"io"

	_ "golang.org/x/image/webp" // register the WebP decoder

	"github.com/nounsai/sdserver/shared/apperr"
)

// Limits bound the images Decode accepts.
type Limits struct {
	// MaxWidth and MaxHeight bound each side in pixels; zero means 4096.
	MaxWidth, MaxHeight int
	// MaxDecodedBytes bounds the memory the decoder allocates for the
	// pixels, estimated from the header (Info.DecodedBytes) before any
	// pixel is decoded: a small file can claim a 16-bit 4096×4096 image
	// (128 MiB). Zero means no bound beyond the sides.
	MaxDecodedBytes int64
}

// DefaultLimits are the limits of user uploads: 4096×4096.
var DefaultLimits = Limits{MaxWidth: 4096, MaxHeight: 4096}

func (l Limits) withDefaults() Limits {
	if l.MaxWidth <= 0 {
		l.MaxWidth = 4096
	}
	if l.MaxHeight <= 0 {
		l.MaxHeight = 4096
	}
	return l
}

// Info is what an image header says.
type Info struct {
	// Format is the decoder name: "png", "jpeg", "gif" or "webp".
	Format string
	// Width and Height are in pixels.
	Width, Height int
	// DecodedBytes is what decoding allocates for the pixels: width ×
	// height × the bytes per pixel of the header's colour model (an upper
	// estimate; progressive JPEGs count their coefficient buffers).
	DecodedBytes int64
}

// bytesPerPixel is the decoder's allocation per pixel for a colour model
// (8, the largest, when unknown).
func bytesPerPixel(m color.Model, format string, data []byte) int64 {
	switch m {
	case color.GrayModel:
		return 1
	case color.Gray16Model:
		return 2
	case color.RGBAModel, color.NRGBAModel, color.AlphaModel:
		return 4
	case color.RGBA64Model, color.NRGBA64Model, color.Alpha16Model:
		return 8
	case color.YCbCrModel, color.NYCbCrAModel, color.CMYKModel:
		if format == "jpeg" && progressiveJPEG(data) {
			// Progressive JPEGs keep every coefficient as an int32
			// until the last scan: 4 bytes per sample, per component.
			return 16
		}
		return 4
	}
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	return 8
}

// progressiveJPEG reports whether the JPEG's header holds a progressive
// frame marker (SOF2); a false positive only overestimates.
func progressiveJPEG(data []byte) bool {
	return bytes.Contains(data, []byte{0xff, 0xc2})
}

// ThumbnailSize is the longest side of a thumbnail in pixels (legacy).
const ThumbnailSize = 100

// Check reads only the image header of data and checks the format and the
// dimensions against lim, allocating nothing in proportion to the claimed
// size. Not an image (or an unsupported format) and a header over the
// limits are Invalid errors.
func Check(data []byte, lim Limits) (Info, error) {
	lim = lim.withDefaults()
	if len(data) == 0 {
		return Info{}, apperr.Invalid("The file is empty")
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		if errors.Is(err, image.ErrFormat) {
			return Info{}, apperr.Wrap(apperr.KindInvalid, "The file is not a supported image (PNG, JPEG, GIF or WebP)", err)
		}
		return Info{}, apperr.Wrap(apperr.KindInvalid, "The image is truncated or corrupt", err)
	}
	info := Info{Format: format, Width: cfg.Width, Height: cfg.Height}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return info, apperr.Invalid("The image has no pixels")
	}
	if cfg.Width > lim.MaxWidth || cfg.Height > lim.MaxHeight {
		return info, apperr.Invalid(fmt.Sprintf("The image is %d×%d pixels; the limit is %d×%d",
			cfg.Width, cfg.Height, lim.MaxWidth, lim.MaxHeight))
	}
	info.DecodedBytes = int64(cfg.Width) * int64(cfg.Height) * bytesPerPixel(cfg.ColorModel, format, data)
	if lim.MaxDecodedBytes > 0 && info.DecodedBytes > lim.MaxDecodedBytes {
		return info, apperr.Invalid(fmt.Sprintf("The image is too large to decode (%d×%d pixels at this colour depth take %d MiB; the limit is %d MiB)",
			cfg.Width, cfg.Height, info.DecodedBytes>>20, lim.MaxDecodedBytes>>20))
	}
	return info, nil
}

// Decode checks the header with Check and then decodes the whole image.
// A truncated or corrupt image is an Invalid error.
func Decode(data []byte, lim Limits) (image.Image, Info, error) {
	info, err := Check(data, lim)
	if err != nil {
		return nil, info, err
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, info, apperr.Wrap(apperr.KindInvalid, "The image is truncated or corrupt", err)
	}
	b := img.Bounds()
	if b.Dx() != info.Width || b.Dy() != info.Height {
		return nil, info, apperr.Invalid("The image is corrupt")
	}
	return img, info, nil
}

// Hash returns the lowercase hex SHA-256 of data (the images.hash column).
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ReadAllLimit reads r up to max bytes; more is a TooLarge error with the
// legacy 413 body.
func ReadAllLimit(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read upload: %w", err)
	}
	if int64(len(data)) > max {
		return nil, apperr.TooLarge("File size exceeds the allowed limit").WithKey("error")
	}
	return data, nil
}
