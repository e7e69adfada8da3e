// Package nounsart holds the Nouns artwork (the CC0 pixel art of Nouns DAO,
// embedded verbatim from @nouns/assets 0.10.0, see data/NOTICE.md) and the
// code that works with it: an RLE decoder and compositor, the NounsSeeder
// derivation of traits from a number, the mapping between prompt words and
// trait names, and the matching of an image back to its traits.
//
// Everything here is pure computation on in-memory data: it must never
// perform I/O beyond reading the embedded bytes, and never keep global state.
// An *Art is immutable after Parse and safe for concurrent use.
package nounsart

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/color"
	"strings"
)

// Size is the side of the Nouns canvas in pixels.
const Size = 32

// DataVersion names the artwork source; put it into cache keys, because the
// seed → trait mapping changes when trait counts change.
const DataVersion = "@nouns/assets@0.10.0"

//go:embed data/image-data.json
var imageData []byte

// Layer is one of the five trait layers of a Noun, in painting order.
type Layer int

// The layers, in the order they are painted.
const (
	Background Layer = iota
	Body
	Accessory
	Head
	Glasses
	NumLayers int = 5
)

// Layers lists the layers in painting order.
func Layers() [NumLayers]Layer {
	return [NumLayers]Layer{Background, Body, Accessory, Head, Glasses}
}

// String returns the layer's lowercase name ("background", "body", ...).
func (l Layer) String() string {
	switch l {
	case Background:
		return "background"
	case Body:
		return "body"
	case Accessory:
		return "accessory"
	case Head:
		return "head"
	case Glasses:
		return "glasses"
	}
	return fmt.Sprintf("layer(%d)", int(l))
}

// prefix is the filename prefix of the layer's parts ("head-").
func (l Layer) prefix() string { return l.String() + "-" }

// Pixel is one opaque pixel of a decoded part: its position on the 32×32
// canvas and its palette index (never 0).
type Pixel struct {
	X, Y  uint8
	Color uint8
}

// Part is one decoded image of a layer (a body, accessory, head or glasses),
// or a pseudo-part for a background colour.
type Part struct {
	// Name is the upstream filename, e.g. "head-shark"; backgrounds are named
	// "cool" and "warm".
	Name string
	// Tokens are the lowercase words of the name without the layer prefix,
	// e.g. {"square", "red"} for "glasses-square-red".
	Tokens []string
	// Top, Right, Bottom, Left is the bounding box: columns Left ≤ x < Right,
	// rows Top ≤ y ≤ Bottom. All zero for an empty part.
	Top, Right, Bottom, Left int
	// Pixels are the opaque pixels in paint order.
	Pixels []Pixel
	// RunTotal is the sum of all run lengths in the RLE data.
	RunTotal int
}

// Art is the parsed artwork. It is immutable and safe for concurrent use.
type Art struct {
	// Palette holds the colours; entry 0 is transparent (the zero colour).
	Palette []color.RGBA
	// parts per layer; parts[Background] are pseudo-parts without pixels
	// whose colours are in backgrounds.
	parts       [NumLayers][]Part
	backgrounds []color.RGBA
}

type rawPart struct {
	Filename string `json:"filename"`
	Data     string `json:"data"`
}

type rawData struct {
	BGColors []string `json:"bgcolors"`
	Palette  []string `json:"palette"`
	Images   struct {
		Bodies      []rawPart `json:"bodies"`
		Accessories []rawPart `json:"accessories"`
		Heads       []rawPart `json:"heads"`
		Glasses     []rawPart `json:"glasses"`
	} `json:"images"`
}

// Load parses the embedded artwork. Call it once and share the result.
func Load() (*Art, error) { return Parse(imageData) }

// Parse decodes an image-data.json document and validates every part: the
// palette index byte is 0, the box lies inside the canvas, the run total
// equals the box area (the empty header of accessory-none excepted) and every
// colour index is inside the palette.
func Parse(data []byte) (*Art, error) {
	var raw rawData
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse nouns image data: %w", err)
	}
	a := &Art{Palette: make([]color.RGBA, len(raw.Palette))}
	for i, h := range raw.Palette {
		if i == 0 {
			continue // placeholder for transparent
		}
		c, err := parseHex(h)
		if err != nil {
			return nil, fmt.Errorf("palette entry %d: %w", i, err)
		}
		a.Palette[i] = c
	}
	if len(a.Palette) < 2 || len(a.Palette) > 256 {
		return nil, fmt.Errorf("palette has %d entries, want 2..256", len(a.Palette))
	}
	for i, h := range raw.BGColors {
		c, err := parseHex(h)
		if err != nil {
			return nil, fmt.Errorf("background %d: %w", i, err)
		}
		a.backgrounds = append(a.backgrounds, c)
		a.parts[Background] = append(a.parts[Background], Part{Name: backgroundName(i), Tokens: []string{backgroundName(i)}})
	}
	if len(a.backgrounds) == 0 {
		return nil, fmt.Errorf("no background colours")
	}
	sets := [...]struct {
		layer Layer
		raw   []rawPart
	}{
		{Body, raw.Images.Bodies}, {Accessory, raw.Images.Accessories},
		{Head, raw.Images.Heads}, {Glasses, raw.Images.Glasses},
	}
	for _, s := range sets {
		if len(s.raw) == 0 {
			return nil, fmt.Errorf("no %s parts", s.layer)
		}
		for _, rp := range s.raw {
			p, err := decodePart(rp, s.layer, len(a.Palette))
			if err != nil {
				return nil, err
			}
			a.parts[s.layer] = append(a.parts[s.layer], p)
		}
	}
	return a, nil
}

// backgroundName names background i: the first is the cool grey, the second
// the warm grey.
func backgroundName(i int) string {
	switch i {
	case 0:
		return "cool"
	case 1:
		return "warm"
	}
	return fmt.Sprintf("background%d", i)
}

func parseHex(s string) (color.RGBA, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 3 {
		return color.RGBA{}, fmt.Errorf("bad colour %q", s)
	}
	return color.RGBA{R: b[0], G: b[1], B: b[2], A: 0xff}, nil
}

// decodePart decodes one part's RLE bytes: a 5-byte header (palette index,
// top, right exclusive, bottom inclusive, left) then (length, colour) pairs
// that fill the box row by row, wrapping at right; colour 0 is transparent.
func decodePart(rp rawPart, layer Layer, paletteLen int) (Part, error) {
	p := Part{Name: rp.Filename, Tokens: Tokenize(strings.TrimPrefix(rp.Filename, layer.prefix()))}
	b, err := hex.DecodeString(strings.TrimPrefix(rp.Data, "0x"))
	if err != nil {
		return Part{}, fmt.Errorf("part %s: %w", rp.Filename, err)
	}
	if len(b) < 5 || (len(b)-5)%2 != 0 {
		return Part{}, fmt.Errorf("part %s: bad length %d", rp.Filename, len(b))
	}
	if b[0] != 0 {
		return Part{}, fmt.Errorf("part %s: palette index %d, want 0", rp.Filename, b[0])
	}
	p.Top, p.Right, p.Bottom, p.Left = int(b[1]), int(b[2]), int(b[3]), int(b[4])
	runs := b[5:]
	if len(runs) == 0 {
		return p, nil // an empty part such as accessory-none
	}
	if p.Left >= p.Right || p.Right > Size || p.Top > p.Bottom || p.Bottom >= Size {
		return Part{}, fmt.Errorf("part %s: box outside canvas", rp.Filename)
	}
	area := (p.Bottom - p.Top + 1) * (p.Right - p.Left)
	x, y := p.Left, p.Top
	for i := 0; i < len(runs); i += 2 {
		n, c := int(runs[i]), runs[i+1]
		if int(c) >= paletteLen {
			return Part{}, fmt.Errorf("part %s: colour %d outside palette", rp.Filename, c)
		}
		p.RunTotal += n
		if p.RunTotal > area {
			return Part{}, fmt.Errorf("part %s: runs exceed box area %d", rp.Filename, area)
		}
		for ; n > 0; n-- {
			if c != 0 {
				p.Pixels = append(p.Pixels, Pixel{X: uint8(x), Y: uint8(y), Color: c})
			}
			x++
			if x == p.Right {
				x = p.Left
				y++
			}
		}
	}
	return p, nil
}

// Parts returns the parts of a layer in upstream index order. For Background
// they are pseudo-parts ("cool", "warm") without pixels. The slice is shared:
// do not modify it.
func (a *Art) Parts(l Layer) []Part { return a.parts[l] }

// Count returns the number of parts (or background colours) of a layer.
func (a *Art) Count(l Layer) int { return len(a.parts[l]) }

// Counts returns the trait counts in layer order.
func (a *Art) Counts() [NumLayers]int {
	var c [NumLayers]int
	for _, l := range Layers() {
		c[l] = a.Count(l)
	}
	return c
}

// Colors returns every colour a Noun can contain: the palette (without the
// transparent entry) followed by the background colours. The result is a
// fresh slice.
func (a *Art) Colors() []color.RGBA {
	out := make([]color.RGBA, 0, len(a.Palette)-1+len(a.backgrounds))
	out = append(out, a.Palette[1:]...)
	return append(out, a.backgrounds...)
}

// Index returns the index of the part named name in layer l ("head-shark"),
// or -1.
func (a *Art) Index(l Layer, name string) int {
	for i, p := range a.parts[l] {
		if p.Name == name {
			return i
		}
	}
	return -1
}
