package media

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"sync"
)

// pngEncoder writes every PNG of this package. BestSpeed: stored images are
// written once per request on the request path, and the default level
// costs several times the CPU for a few percent of size. Its buffers (the
// deflate state is about 1 MB) are reused across calls. It is a cache, not
// a dependency: png.Encoder is safe for concurrent use when its BufferPool
// is.
var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngBuffers{}}

// pngBuffers is a png.EncoderBufferPool over a sync.Pool.
type pngBuffers struct{ pool sync.Pool }

func (p *pngBuffers) Get() *png.EncoderBuffer {
	b, _ := p.pool.Get().(*png.EncoderBuffer)
	return b
}

func (p *pngBuffers) Put(b *png.EncoderBuffer) { p.pool.Put(b) }

// EncodePNG encodes img as PNG, losslessly. An *image.RGBA or
// *image.NRGBA with at most 256 distinct colours (generated pixel art, for
// example) is written as a paletted PNG, which is several times smaller and
// faster to write; decoding it gives the same pixels. (In an *image.RGBA
// only fully opaque or fully transparent colours qualify, so that no
// premultiplied value is rounded differently.)
func EncodePNG(img image.Image) ([]byte, error) {
	if p := toPaletted(img); p != nil {
		img = p
	}
	var buf bytes.Buffer
	if err := pngEncoder.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode png: %w", err)
	}
	return buf.Bytes(), nil
}

// maxPaletteColors is the most colours a PNG palette holds.
const maxPaletteColors = 256

// toPaletted returns img as an *image.Paletted with the same bounds and
// pixels, or nil when img is not an *image.RGBA or *image.NRGBA, has more
// than 256 colours, or (RGBA) has a partly transparent colour.
func toPaletted(img image.Image) *image.Paletted {
	var (
		pix    []byte
		stride int
		r      image.Rectangle
		premul bool
	)
	switch m := img.(type) {
	case *image.RGBA:
		pix, stride, r, premul = m.Pix, m.Stride, m.Rect, true
	case *image.NRGBA:
		pix, stride, r = m.Pix, m.Stride, m.Rect
	default:
		return nil
	}
	w, h := r.Dx(), r.Dy()
	if w <= 0 || h <= 0 {
		return nil
	}
	// One pass: index the colours, giving up as soon as there are too many
	// (a photograph stops within its first rows). Runs of one colour, the
	// common case in pixel art, skip the map.
	out := image.NewPaletted(r, make(color.Palette, 0, maxPaletteColors))
	index := make(map[uint32]uint8, maxPaletteColors)
	last, li, haveLast := uint32(0), uint8(0), false
	for y := range h {
		row := pix[y*stride : y*stride+w*4]
		dst := out.Pix[y*out.Stride : y*out.Stride+w]
		for x := range dst {
			q := row[x*4 : x*4+4 : x*4+4]
			c := uint32(q[0]) | uint32(q[1])<<8 | uint32(q[2])<<16 | uint32(q[3])<<24
			if !haveLast || c != last {
				i, ok := index[c]
				if !ok {
					if premul && q[3] != 0 && q[3] != 0xff {
						return nil
					}
					if len(out.Palette) == maxPaletteColors {
						return nil
					}
					i = uint8(len(out.Palette))
					index[c] = i
					if premul {
						out.Palette = append(out.Palette, color.RGBA{q[0], q[1], q[2], q[3]})
					} else {
						out.Palette = append(out.Palette, color.NRGBA{q[0], q[1], q[2], q[3]})
					}
				}
				last, li, haveLast = c, i, true
			}
			dst[x] = li
		}
	}
	return out
}
