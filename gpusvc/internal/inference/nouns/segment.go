package nouns

import (
	"context"
	"fmt"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
)

// SegmentThreshold is the largest RGB distance (Euclidean, 0..441) from a
// point's colour that a pixel may have to join that point's region.
const SegmentThreshold = 40

// MaxSegmentPoints is the most points one segment request may give.
const MaxSegmentPoints = 64

// Segment grows a region from every point by flood fill (4-connected)
// over the pixels whose colour is within SegmentThreshold of the colour
// at that point, and returns the union as a W×H row-major mask. Points are
// in the image's own coordinates and must lie inside it.
func (b *Backend) Segment(ctx context.Context, req inference.SegmentRequest) ([]bool, error) {
	if req.Image == nil {
		return nil, apperr.Invalid("segment needs an image")
	}
	if len(req.Points) == 0 || len(req.Points) > MaxSegmentPoints {
		return nil, apperr.Invalid(fmt.Sprintf("segment needs 1 to %d points", MaxSegmentPoints))
	}
	bounds := req.Image.Bounds()
	img, err := toRGBA(req.Image)
	if err != nil {
		return nil, err
	}
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	mask := make([]bool, w*h)
	// visited holds, per pixel, 1 + the index of the last point whose fill
	// reached it: regions may overlap, so each fill needs its own marks.
	visited := make([]uint8, w*h)
	var stack []int
	for k, p := range req.Points {
		stamp := uint8(k + 1)
		if !p.In(bounds) {
			return nil, apperr.Invalid(fmt.Sprintf("point (%d,%d) is outside the image", p.X, p.Y))
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := (p.Y-bounds.Min.Y)*w + p.X - bounds.Min.X
		ref := img.Pix[start*4 : start*4+3]
		near := func(i int) bool {
			q := img.Pix[i*4 : i*4+3]
			dr, dg, db := int(q[0])-int(ref[0]), int(q[1])-int(ref[1]), int(q[2])-int(ref[2])
			return dr*dr+dg*dg+db*db <= SegmentThreshold*SegmentThreshold
		}
		visited[start], mask[start] = stamp, true
		stack = append(stack[:0], start)
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			x, y := i%w, i/w
			for _, n := range [4][2]int{{x - 1, y}, {x + 1, y}, {x, y - 1}, {x, y + 1}} {
				if n[0] < 0 || n[0] >= w || n[1] < 0 || n[1] >= h {
					continue
				}
				j := n[1]*w + n[0]
				if visited[j] != stamp && near(j) {
					visited[j], mask[j] = stamp, true
					stack = append(stack, j)
				}
			}
		}
	}
	return mask, nil
}
