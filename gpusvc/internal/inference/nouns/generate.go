package nouns

import (
	"context"
	"fmt"
	"image"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/nounsart"
	"github.com/nounsai/sdserver/shared/apperr"
)

// txt2img renders one Noun per sample at the requested size snapped to
// multiples of 32.
func (b *Backend) txt2img(ctx context.Context, req inference.ImageRequest, samples int) (inference.ImageResult, error) {
	w, err := snapSide(req.Width, "width")
	if err != nil {
		return inference.ImageResult{}, err
	}
	h, err := snapSide(req.Height, "height")
	if err != nil {
		return inference.ImageResult{}, err
	}
	if err := checkBudget(samples, w, h); err != nil {
		return inference.ImageResult{}, err
	}
	seeds, reqSeeds := b.sampleSeeds(req.Prompt, req.Seed, samples)
	res := inference.ImageResult{Info: b.info(seeds, reqSeeds)}
	for _, s := range seeds {
		if err := ctx.Err(); err != nil {
			return inference.ImageResult{}, err
		}
		img, err := b.art.Render(s, w, h)
		if err != nil {
			return inference.ImageResult{}, fmt.Errorf("txt2img: %w", err)
		}
		res.Images = append(res.Images, img)
	}
	return res, nil
}

// snapSide rounds a requested side to the nearest multiple of 32 (at least
// 32); 0 means DefaultSize.
func snapSide(v int, name string) (int, error) {
	if v == 0 {
		return DefaultSize, nil
	}
	if v < 0 || v > MaxSide {
		return 0, apperr.Invalid(fmt.Sprintf("%s must be between 1 and %d", name, MaxSide))
	}
	return max(nounsart.Size, (v+nounsart.Size/2)/nounsart.Size*nounsart.Size), nil
}

// sampleSeeds resolves the Noun of every sample. Layers the prompt names
// (nounsart.Art.Select) are fixed; the others come from the request seed:
// sample i uses seed+i. If that repeats an earlier sample's Noun, it tries
// seed+i+k·samples for k = 1..63, and if the prompt pins so much that no
// new Noun appears, it releases the prompt's choices one at a time
// (accessory, background, body, glasses, head) so every sample differs.
// It returns the Nouns and the integer seed each was derived from.
func (b *Backend) sampleSeeds(prompt string, seed int64, samples int) ([]nounsart.Seed, []int64) {
	sel := b.art.Select(prompt)
	used := make(map[nounsart.Seed]bool, samples)
	seeds := make([]nounsart.Seed, 0, samples)
	reqSeeds := make([]int64, 0, samples)
	release := []nounsart.Layer{-1, nounsart.Accessory, nounsart.Background, nounsart.Body, nounsart.Glasses, nounsart.Head}
	for i := range samples {
		pins := sel
		var s nounsart.Seed
		var sd int64
	search:
		for _, free := range release {
			if free >= 0 {
				pins.Pinned &^= 1 << free
			}
			for k := range 64 {
				// Integer overflow wraps, which is fine for a seed.
				sd = seed + int64(i) + int64(k)*int64(samples)
				s = pins.Apply(b.art.SeedFromInt(sd))
				if !used[s] {
					break search
				}
			}
		}
		used[s] = true
		seeds = append(seeds, s)
		reqSeeds = append(reqSeeds, sd)
	}
	return seeds, reqSeeds
}

// info describes rendered Nouns for ImageResult.Info.
func (b *Backend) info(seeds []nounsart.Seed, reqSeeds []int64) map[string]any {
	traits := make([]map[string]any, len(seeds))
	for i, s := range seeds {
		traits[i] = b.traits(s)
	}
	return map[string]any{"art": nounsart.DataVersion, "seeds": reqSeeds, "traits": traits}
}

// traits maps each layer name to the part's index and name.
func (b *Backend) traits(s nounsart.Seed) map[string]any {
	m := make(map[string]any, nounsart.NumLayers)
	names := b.art.Traits(s)
	for _, l := range nounsart.Layers() {
		m[l.String()] = map[string]any{"index": s[l], "name": names[l]}
	}
	return m
}

// renderLike renders Noun s at the size of img.
func (b *Backend) renderLike(s nounsart.Seed, img image.Image) (*image.RGBA, error) {
	r := img.Bounds()
	return b.art.Render(s, r.Dx(), r.Dy())
}
