package nouns

import (
	"context"
	"hash/fnv"
	"image"
	"strings"

	"github.com/nounsai/sdserver/gpusvc/internal/nounsart"
	"github.com/nounsai/sdserver/shared/apperr"
)

// Interrogate describes a Noun image by its traits, e.g. "a noun with a
// shark head, square red noggles, a teal body, a txt noun multicolor
// accessory, a cool background". The image is read back onto the 32×32
// grid at the scale and centring Render uses (mean colour per cell) and
// matched layer by layer (nounsart.Art.Match): exact for images this
// backend made, the nearest Noun otherwise. The description reads back
// through txt2img's prompt parsing to the same traits.
func (b *Backend) Interrogate(ctx context.Context, model string, img image.Image) (string, error) {
	if img == nil {
		return "", apperr.Invalid("interrogate needs an image")
	}
	src, err := toRGBA(img)
	if err != nil {
		return "", err
	}
	if src.Bounds().Dx() < nounsart.Size || src.Bounds().Dy() < nounsart.Size {
		return "", apperr.Invalid("interrogate needs an image of at least 32x32 pixels")
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	g := nounsart.GridFromImage(src)
	s, _ := b.art.Match(&g)
	return b.art.Describe(s), nil
}

// styleWords are the style phrases ExtendPrompt may add; none of their
// words names a Nouns head, so they never change the Noun.
func styleWords() []string {
	return []string{
		"pixel art", "crisp 32x32 grid", "flat colours", "cc0 artwork", "bold blocky shapes",
		"nounish", "clean 8-bit look", "simple shading", "playful", "vibrant palette",
	}
}

// MaxExtendedPromptLen bounds ExtendPrompt's input, in bytes.
const MaxExtendedPromptLen = 2000

// ExtendPrompt appends trait and style words chosen deterministically from
// an FNV-1a hash of the prompt: a phrase for each of head, glasses and body
// the prompt does not already name (so txt2img of the result keeps every
// trait the prompt named), then two distinct style phrases.
func (b *Backend) ExtendPrompt(ctx context.Context, prompt string) (string, error) {
	if len(prompt) > MaxExtendedPromptLen {
		return "", apperr.Invalid("prompt is too long")
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	h := fnv.New64a()
	h.Write([]byte(prompt))
	x := h.Sum64()
	next := func(n int) int {
		// splitmix64 step: spreads the hash over several draws.
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		return int((z ^ z>>31) % uint64(n))
	}
	sel := b.art.Select(prompt)
	var add []string
	for _, l := range []nounsart.Layer{nounsart.Head, nounsart.Glasses, nounsart.Body} {
		if !sel.Pinned.Has(l) {
			add = append(add, b.art.Phrase(l, next(b.art.Count(l))))
		}
	}
	styles := styleWords()
	i := next(len(styles))
	j := (i + 1 + next(len(styles)-1)) % len(styles)
	add = append(add, styles[i], styles[j])
	prompt = strings.TrimSpace(prompt)
	if prompt == "" {
		return "a noun with " + strings.Join(add, ", "), nil
	}
	return prompt + ", " + strings.Join(add, ", "), nil
}
