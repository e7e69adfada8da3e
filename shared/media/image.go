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
