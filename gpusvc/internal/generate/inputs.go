package generate

import (
	"fmt"
	"image"

	xdraw "golang.org/x/image/draw"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/media"
)

// Decoding inputs (issue 13.3): the header of an input image is checked
// when the request arrives, before it is charged or queued — its sides and
// the memory its pixels would take (a 105 KB PNG can claim 16-bit
// 4096×4096, 128 MiB) — and the pixels are decoded only inside the
// request's capacity slot, so that at most GPU_SLOTS decodes, each at most
// Limits.MaxDecodedBytes, are in memory at once however many requests
// arrive.

// mediaLimits are the limits of an input image.
func (l Limits) mediaLimits() media.Limits {
	return media.Limits{MaxWidth: l.MaxInputSide, MaxHeight: l.MaxInputSide, MaxDecodedBytes: l.MaxDecodedBytes}
}

// checkInput checks an input image's size and header against the limits
// without decoding any pixel.
func (s *Service) checkInput(field string, data []byte) (media.Info, error) {
	l := s.opts.Limits
	if len(data) > l.MaxInputBytes {
		return media.Info{}, apperr.TooLarge(fmt.Sprintf("%s must decode to at most %d bytes", field, l.MaxInputBytes)).WithField("field", field)
	}
	info, err := media.Check(data, l.mediaLimits())
	return info, fieldError(field, err)
}

// decodeInput decodes an input image (checking its header again first).
// Call it only inside a capacity slot (see above).
func (s *Service) decodeInput(field string, data []byte) (image.Image, error) {
	if _, err := s.checkInput(field, data); err != nil {
		return nil, err
	}
	img, _, err := media.Decode(data, s.opts.Limits.mediaLimits())
	return img, fieldError(field, err)
}

// fieldError names field in an Invalid error.
func fieldError(field string, err error) error {
	if ae, ok := apperr.As(err); ok && ae.Kind == apperr.KindInvalid {
		return ae.WithField("field", field)
	}
	return err
}

// checkInputs checks what decodeInputs will decode, from the headers: the
// input is at least MinSide on each side and the Mask mode's mask has the
// input's size.
func (s *Service) checkInputs(job ImageJob) error {
	l := s.opts.Limits
	info, err := s.checkInput("base_64", job.Input)
	if err != nil {
		return err
	}
	if info.Width < l.MinSide || info.Height < l.MinSide {
		return invalidField("base_64", fmt.Sprintf("the input image must be at least %d×%d pixels", l.MinSide, l.MinSide))
	}
	if job.Op == inference.OpInpaint {
		if want := (info.Width*info.Height + 7) / 8; len(job.Mask) != want {
			return invalidField("mask", fmt.Sprintf("mask must hold %d bytes (%d×%d bits, as /mask returns), got %d", want, info.Width, info.Height, len(job.Mask)))
		}
	}
	return nil
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
