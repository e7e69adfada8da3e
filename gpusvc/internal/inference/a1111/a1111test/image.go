package a1111test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"strings"
)

// DetectMapColor fills the ControlNet detect maps the fake appends after the
// generated images.
var DetectMapColor = color.RGBA{R: 255, G: 0, B: 255, A: 255}

// SeedColor is the solid colour of the image generated for seed (opaque,
// derived with a splitmix64 step so nearby seeds differ visibly).
func SeedColor(seed int64) color.RGBA {
	z := uint64(seed) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return color.RGBA{R: uint8(z), G: uint8(z >> 8), B: uint8(z >> 16), A: 255}
}

// solid returns a w×h image of one colour.
func solid(w, h int, c color.Color) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{C: c}, image.Point{}, draw.Src)
	return img
}

// diskMask returns a black image with white disks around points.
func diskMask(w, h int, points []image.Point) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	rad := int(float64(min(w, h)) * MaskRadius)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for _, p := range points {
				dx, dy := x-p.X, y-p.Y
				if dx*dx+dy*dy <= rad*rad {
					m.SetGray(x, y, color.Gray{Y: 255})
					break
				}
			}
		}
	}
	return m
}

// avgColor is the colour at the centre of img (enough for solid inputs).
func avgColor(img image.Image) color.Color {
	r := img.Bounds()
	return img.At(r.Min.X+r.Dx()/2, r.Min.Y+r.Dy()/2)
}

// encodeB64 encodes img as base64 PNG (or JPEG) without a data: prefix.
func encodeB64(img image.Image, asJPEG bool) string {
	var buf bytes.Buffer
	if asJPEG {
		_ = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95})
	} else {
		_ = png.Encode(&buf, img)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// decodeB64Image decodes a base64 PNG or JPEG; allowDataURI accepts a
// data: prefix (A1111 strips one from init_images and most inputs too).
func decodeB64Image(s string, allowDataURI bool) (image.Image, error) {
	if s == "" {
		return nil, errors.New("empty image")
	}
	if strings.HasPrefix(s, "data:") {
		i := strings.IndexByte(s, ',')
		if !allowDataURI || i < 0 {
			return nil, errors.New("unexpected data: prefix")
		}
		s = s[i+1:]
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("invalid base64")
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, errors.New("not a PNG or JPEG image")
	}
	return img, nil
}

// DecodeImage decodes a base64 PNG or JPEG as the fake receives them, for
// tests that inspect recorded requests.
func DecodeImage(b64 string) (image.Image, error) { return decodeB64Image(b64, true) }
