package generate

import (
	"fmt"
	"image"

	xdraw "golang.org/x/image/draw"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/media"
)

// decodeInput checks an input image's header against the limits before
// decoding it (a 30000×30000 header is refused without allocating), then
// decodes it.
func (s *Service) decodeInput(field string, data []byte) (image.Image, error) {
	l := s.opts.Limits
	if len(data) > l.MaxInputBytes {
		return nil, apperr.TooLarge(fmt.Sprintf("%s must decode to at most %d bytes", field, l.MaxInputBytes)).WithField("field", field)
	}
	img, _, err := media.Decode(data, media.Limits{MaxWidth: l.MaxInputSide, MaxHeight: l.MaxInputSide})
	if err != nil {
		if ae, ok := apperr.As(err); ok && ae.Kind == apperr.KindInvalid {
			return nil, ae.WithField("field", field)
		}
		return nil, err
	}
	return img, nil
}

// decodeInputs decodes the input image (and the Mask mode's mask), checks
// the input is at least MinSide on each side, and shrinks both to fit
// MaxSide, keeping the aspect ratio: the output of image modes has the
// input's size, so this bounds the work like aspect_ratio does for Text to
// Image.
func (s *Service) decodeInputs(job ImageJob) (init, mask image.Image, err error) {
	l := s.opts.Limits
	init, err = s.decodeInput("base_64", job.Input)
	if err != nil {
		return nil, nil, err
	}
	b := init.Bounds()
	if b.Dx() < l.MinSide || b.Dy() < l.MinSide {
		return nil, nil, invalidField("base_64", fmt.Sprintf("the input image must be at least %d×%d pixels", l.MinSide, l.MinSide))
	}
	if job.Op == inference.OpInpaint {
		if mask, err = UnpackMask(job.Mask, b.Dx(), b.Dy()); err != nil {
			return nil, nil, err
		}
	}
	w, h := fit(b.Dx(), b.Dy(), l.MaxSide)
	if w != b.Dx() || h != b.Dy() {
		init = resize(init, w, h, xdraw.CatmullRom)
		if mask != nil {
			mask = resize(mask, w, h, xdraw.NearestNeighbor)
		}
	}
	return init, mask, nil
}

// fit scales w×h down so that neither side exceeds maxSide, keeping the
// aspect ratio (sides never below 1).
func fit(w, h, maxSide int) (int, int) {
	if w <= maxSide && h <= maxSide {
		return w, h
	}
	if w >= h {
		return maxSide, max(1, (h*maxSide+w/2)/w)
	}
	return max(1, (w*maxSide+h/2)/h), maxSide
}

// resize scales img to w×h with the given interpolator.
func resize(img image.Image, w, h int, s xdraw.Scaler) image.Image {
	var dst xdraw.Image
	if _, gray := img.(*image.Gray); gray {
		dst = image.NewGray(image.Rect(0, 0, w, h))
	} else {
		dst = image.NewRGBA(image.Rect(0, 0, w, h))
	}
	s.Scale(dst, dst.Bounds(), img, img.Bounds(), xdraw.Src, nil)
	return dst
}

// UnpackMask turns the legacy mask (the output of /mask: a w×h boolean
// array, row-major, bit-packed MSB-first, 1 = repaint) into a gray image
// (255 = repaint). It must hold exactly ⌈w·h/8⌉ bytes.
func UnpackMask(packed []byte, w, h int) (*image.Gray, error) {
	if want := (w*h + 7) / 8; len(packed) != want {
		return nil, invalidField("mask", fmt.Sprintf("mask must hold %d bytes (%d×%d bits, as /mask returns), got %d", want, w, h, len(packed)))
	}
	m := image.NewGray(image.Rect(0, 0, w, h))
	for i := range w * h {
		if packed[i>>3]&(0x80>>(i&7)) != 0 {
			m.Pix[i] = 0xff
		}
	}
	return m, nil
}

// PackMask is the inverse of UnpackMask for a row-major w×h mask.
func PackMask(bits []bool) []byte {
	out := make([]byte, (len(bits)+7)/8)
	for i, b := range bits {
		if b {
			out[i>>3] |= 0x80 >> (i & 7)
		}
	}
	return out
}
