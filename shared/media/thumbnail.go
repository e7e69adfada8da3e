package media

import (
	"image"
	"image/draw"
)

// Thumbnail returns img scaled so that its longest side is longest pixels,
// keeping the aspect ratio; no side is ever below 1 pixel (legacy C16). An
// image already within the size is returned as an NRGBA copy. Downscaling
// averages the source area under each thumbnail pixel exactly (a box
// filter, weighted by alpha), which suits both photographs and pixel art
// and reads each source pixel once.
func Thumbnail(img image.Image, longest int) image.Image {
	if longest <= 0 {
		longest = ThumbnailSize
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	tw, th := w, h
	if w >= h && w > longest {
		tw, th = longest, max(1, (h*longest+w/2)/w)
	} else if h > w && h > longest {
		tw, th = max(1, (w*longest+h/2)/h), longest
	}
	dst := image.NewNRGBA(image.Rect(0, 0, tw, th))
	if tw == w && th == h {
		draw.Draw(dst, dst.Bounds(), img, b.Min, draw.Src)
		return dst
	}
	boxScale(dst, img)
	return dst
}

// ThumbnailPNG returns the PNG of Thumbnail(img, ThumbnailSize).
func ThumbnailPNG(img image.Image) ([]byte, error) {
	return EncodePNG(Thumbnail(img, ThumbnailSize))
}

// boxSpan is where one source pixel lands along an axis: weight a goes to
// destination pixel j and weight b to j+1 (b is 0 when it lies within j).
type boxSpan struct {
	j    int
	a, b uint32
}

// boxSpans maps each of n source pixels onto m ≤ n destination pixels. On
// a common axis of n·m units a source pixel is m units long and a
// destination pixel n, so every overlap is an integer and each destination
// pixel's weights sum to n.
func boxSpans(n, m int) []boxSpan {
	out := make([]boxSpan, n)
	for i := range out {
		start, end := i*m, (i+1)*m
		j := start / n
		if edge := (j + 1) * n; end > edge {
			out[i] = boxSpan{j: j, a: uint32(edge - start), b: uint32(end - edge)}
		} else {
			out[i] = boxSpan{j: j, a: uint32(m)}
		}
	}
	return out
}

// boxColumn is the source columns under one destination column: first
// and last with weights wf and wl (last == first when it is the only one)
// and every column between them with the full weight.
type boxColumn struct {
	first, last int
	wf, wl      uint32
}

// boxColumns groups boxSpans(n, m) by destination pixel.
func boxColumns(n, m int) []boxColumn {
	out := make([]boxColumn, m)
	for i, s := range boxSpans(n, m) {
		c := &out[s.j]
		if c.wf == 0 {
			c.first, c.wf = i, s.a
		}
		c.last, c.wl = i, s.a
		if s.b != 0 {
			out[s.j+1].first, out[s.j+1].wf = i, s.b
		}
	}
	return out
}

// boxScale downscales src into dst (bounds at 0,0, no side larger than
// src's) by exact area averaging of premultiplied colour, in integers.
func boxScale(dst *image.NRGBA, src image.Image) {
	sb := src.Bounds()
	sw, sh := sb.Dx(), sb.Dy()
	dw, dh := dst.Rect.Dx(), dst.Rect.Dy()
	cols, ys := boxColumns(sw, dw), boxSpans(sh, dh)
	full := uint32(dw) // the weight of a source column wholly inside one destination column

	// Source rows as premultiplied RGBA: read in place from an *image.RGBA,
	// converted one row at a time (draw's fast paths) otherwise.
	rgba, _ := src.(*image.RGBA)
	var scratch *image.RGBA
	if rgba == nil {
		scratch = image.NewRGBA(image.Rect(0, 0, sw, 1))
	}

	// row sums one source row per destination column (weights sum to sw);
	// cur and next sum rows into destination rows j and j+1 (weights sum
	// to sh).
	row := make([]uint32, dw*4)
	cur, next := make([]uint64, dw*4), make([]uint64, dw*4)
	total := uint64(sw) * uint64(sh)
	for y, ySpan := range ys {
		var p []byte
		if rgba != nil {
			o := rgba.PixOffset(sb.Min.X, sb.Min.Y+y)
			p = rgba.Pix[o : o+sw*4]
		} else {
			draw.Draw(scratch, scratch.Rect, src, image.Pt(sb.Min.X, sb.Min.Y+y), draw.Src)
			p = scratch.Pix
		}
		for j, c := range cols {
			var r, g, b, a uint32
			if c.last > c.first+1 {
				inner := p[(c.first+1)*4 : c.last*4]
				for i := 0; i+3 < len(inner); i += 4 {
					r += uint32(inner[i])
					g += uint32(inner[i+1])
					b += uint32(inner[i+2])
					a += uint32(inner[i+3])
				}
				r, g, b, a = r*full, g*full, b*full, a*full
			}
			q := p[c.first*4 : c.first*4+4 : c.first*4+4]
			r += uint32(q[0]) * c.wf
			g += uint32(q[1]) * c.wf
			b += uint32(q[2]) * c.wf
			a += uint32(q[3]) * c.wf
			if c.last != c.first {
				q = p[c.last*4 : c.last*4+4 : c.last*4+4]
				r += uint32(q[0]) * c.wl
				g += uint32(q[1]) * c.wl
				b += uint32(q[2]) * c.wl
				a += uint32(q[3]) * c.wl
			}
			d := row[j*4 : j*4+4 : j*4+4]
			d[0], d[1], d[2], d[3] = r, g, b, a
		}
		for i, v := range row {
			cur[i] += uint64(v) * uint64(ySpan.a)
		}
		if ySpan.b != 0 {
			for i, v := range row {
				next[i] += uint64(v) * uint64(ySpan.b)
			}
		}
		// Destination row j is complete once this source row reaches its
		// lower edge: when it spills into j+1, or ends exactly on the edge.
		if ySpan.b != 0 || (y+1)*dh == (ySpan.j+1)*sh {
			writeBoxRow(dst.Pix[ySpan.j*dst.Stride:ySpan.j*dst.Stride+dw*4], cur, total)
			cur, next = next, cur
			clear(next)
		}
	}
}

// writeBoxRow turns premultiplied sums of weight total into NRGBA pixels.
func writeBoxRow(out []byte, sums []uint64, total uint64) {
	for i := 0; i < len(out); i += 4 {
		r, g, b, a := sums[i], sums[i+1], sums[i+2], sums[i+3]
		switch {
		case a == 0:
			out[i], out[i+1], out[i+2], out[i+3] = 0, 0, 0, 0
		case a == 0xff*total:
			out[i] = uint8((r + total/2) / total)
			out[i+1] = uint8((g + total/2) / total)
			out[i+2] = uint8((b + total/2) / total)
			out[i+3] = 0xff
		default:
			out[i] = uint8(min(0xff, (r*0xff+a/2)/a))
			out[i+1] = uint8(min(0xff, (g*0xff+a/2)/a))
			out[i+2] = uint8(min(0xff, (b*0xff+a/2)/a))
			out[i+3] = uint8((a + total/2) / total)
		}
	}
}
