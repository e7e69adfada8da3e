package a1111

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // servers may answer JPEG (samples_format)
	"image/png"
	"strings"

	_ "golang.org/x/image/webp" // servers may answer WebP (samples_format)
)

// maxPixels bounds the size of an image decoded from a server's answer.
const maxPixels = 16384 * 16384

// encodePNG returns img as base64 PNG without a data: prefix.
func encodePNG(img image.Image) (string, error) {
	if img == nil {
		return "", errors.New("missing image")
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return "", fmt.Errorf("encode png: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// decodeImage decodes base64 PNG, JPEG or WebP, with or without a data:
// prefix.
func decodeImage(s string) (image.Image, error) {
	if strings.HasPrefix(s, "data:") {
		if i := strings.IndexByte(s, ','); i >= 0 {
			s = s[i+1:]
		}
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decode base64: %w", err)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decode image header: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return nil, fmt.Errorf("image size %dx%d out of range", cfg.Width, cfg.Height)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decode image: %w", err)
	}
	return img, nil
}

// binaryMask turns a caller's mask into the black/white mask A1111 expects
// (white = repaint). Like A1111's own create_binary_mask, an image with any
// transparency is read by its alpha channel; an opaque one by its
// luminance.
func binaryMask(m image.Image) *image.Gray {
	r := m.Bounds()
	useAlpha := false
	if o, ok := m.(interface{ Opaque() bool }); ok {
		useAlpha = !o.Opaque()
	}
	out := image.NewGray(image.Rect(0, 0, r.Dx(), r.Dy()))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c := m.At(x, y)
			var on bool
			if useAlpha {
				_, _, _, a := c.RGBA()
				on = a > 0x8000
			} else {
				on = color.GrayModel.Convert(c).(color.Gray).Y > 128
			}
			if on {
				out.SetGray(x-r.Min.X, y-r.Min.Y, color.Gray{Y: 255})
			}
		}
	}
	return out
}

// maskBits reads a white-is-selected mask into a w×h row-major []bool,
// sampling the nearest mask pixel when the mask's size differs.
func maskBits(m image.Image, w, h int) []bool {
	r := m.Bounds()
	bits := make([]bool, w*h)
	for y := 0; y < h; y++ {
		my := r.Min.Y + y*r.Dy()/h
		for x := 0; x < w; x++ {
			mx := r.Min.X + x*r.Dx()/w
			bits[y*w+x] = color.GrayModel.Convert(m.At(mx, my)).(color.Gray).Y > 128
		}
	}
	return bits
}
