package nounsart

import "image/color"

// matchTolerance is the squared RGB distance under which a grid colour
// counts as the part's colour when matching (exact images match at 0).
const matchTolerance = 3 * 24 * 24

// Match finds the Noun that best explains a 32×32 grid and reports whether
// rendering it reproduces the grid exactly.
//
// The background is the background colour that most cells are closest to.
// Glasses, then the head, are matched top-down: each part scores +1 for
// every pixel not hidden by an upper layer whose colour is within tolerance
// of the grid and −2 for every other such pixel; the best score wins (ties:
// lowest index). Body and accessory are then chosen together as the pair
// whose composition scores best over all cells the upper layers leave
// visible. Matching runs first with exact colours and, if that does not
// reproduce the grid, again with a tolerance (for resized or re-encoded
// images). For images this package rendered the result is exact, up to
// parts that render identically.
func (a *Art) Match(g *Grid) (Seed, bool) {
	if s := a.match(g, 0); a.Compose(s, AllLayers) == *g {
		return s, true
	}
	s := a.match(g, matchTolerance)
	return s, a.Compose(s, AllLayers) == *g
}

// match is one matching pass with the given squared colour tolerance.
func (a *Art) match(g *Grid, tolerance int) Seed {
	var s Seed
	votes := make([]int, len(a.backgrounds))
	for _, c := range g {
		best, bestD := 0, -1
		for i, bg := range a.backgrounds {
			if d := dist2(c, bg); bestD < 0 || d < bestD {
				best, bestD = i, d
			}
		}
		votes[best]++
	}
	for i, v := range votes {
		if v > votes[s[Background]] {
			s[Background] = i
		}
	}
	var covered [Size * Size]bool
	score := func(got, want color.RGBA) int {
		if dist2(got, want) <= tolerance {
			return 1
		}
		return -2
	}
	for _, l := range [...]Layer{Glasses, Head} {
		best, bestScore := 0, 0
		for i, p := range a.parts[l] {
			sc := 0
			for _, px := range p.Pixels {
				if at := int(px.Y)*Size + int(px.X); !covered[at] {
					sc += score(g[at], a.Palette[px.Color])
				}
			}
			if i == 0 || sc > bestScore {
				best, bestScore = i, sc
			}
		}
		s[l] = best
		for _, px := range a.parts[l][best].Pixels {
			covered[int(px.Y)*Size+int(px.X)] = true
		}
	}
	// Body and accessory are matched jointly over every visible cell,
	// because several accessories are body-shaped and body-coloured.
	bestScore := 0
	for b := range a.parts[Body] {
		below := a.Compose(Seed{Background: s[Background], Body: b}, LayerSet(0).With(Background).With(Body))
		base := 0
		for at, c := range below {
			if !covered[at] {
				base += score(g[at], c)
			}
		}
		for acc, p := range a.parts[Accessory] {
			sc := base
			for _, px := range p.Pixels {
				if at := int(px.Y)*Size + int(px.X); !covered[at] {
					sc += score(g[at], a.Palette[px.Color]) - score(g[at], below[at])
				}
			}
			if b == 0 && acc == 0 || sc > bestScore {
				s[Body], s[Accessory], bestScore = b, acc, sc
			}
		}
	}
	return s
}

// dist2 is the squared Euclidean distance of two colours in RGB.
func dist2(a, b color.RGBA) int {
	dr, dg, db := int(a.R)-int(b.R), int(a.G)-int(b.G), int(a.B)-int(b.B)
	return dr*dr + dg*dg + db*db
}

// Nearest returns the colour in colors closest to c (squared RGB
// distance; ties: the first). colors must not be empty.
func Nearest(colors []color.RGBA, c color.RGBA) color.RGBA {
	best, bestD := colors[0], -1
	for _, p := range colors {
		if d := dist2(c, p); bestD < 0 || d < bestD {
			best, bestD = p, d
			if d == 0 {
				break
			}
		}
	}
	return best
}
