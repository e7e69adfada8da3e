package nounsart

import (
	"crypto/sha256"
	"encoding/hex"
	"image/color"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustLoad(tb testing.TB) *Art {
	tb.Helper()
	a, err := Load()
	require.NoError(tb, err)
	return a
}

func TestEmbeddedDataHash(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256(imageData)
	require.Equal(t, "c87809b865e62d85ba8e3d1d6c4bf2eab12e50602623647f6ce9ac4b1c18af4e", hex.EncodeToString(sum[:]))
	require.Len(t, imageData, 164834)
}

func TestCounts(t *testing.T) {
	t.Parallel()
	a := mustLoad(t)
	require.Equal(t, [NumLayers]int{2, 30, 143, 254, 23}, a.Counts())
	require.Len(t, a.Palette, 239)
	require.Equal(t, color.RGBA{0xd5, 0xd7, 0xe1, 0xff}, a.backgrounds[0])
	require.Equal(t, color.RGBA{0xe1, 0xd7, 0xd5, 0xff}, a.backgrounds[1])
	require.Equal(t, 70, a.Index(Accessory, "accessory-none"))
	require.Equal(t, 133, a.Index(Accessory, "body-bege"))
}

func TestRunTotalsEqualBoxArea(t *testing.T) {
	t.Parallel()
	a := mustLoad(t)
	n := 0
	for _, l := range []Layer{Body, Accessory, Head, Glasses} {
		for _, p := range a.Parts(l) {
			if p.Name == "accessory-none" {
				require.Zero(t, p.RunTotal)
				require.Empty(t, p.Pixels)
				continue
			}
			require.Equal(t, (p.Bottom-p.Top+1)*(p.Right-p.Left), p.RunTotal, p.Name)
			require.NotEmpty(t, p.Pixels, p.Name)
			n++
		}
	}
	require.Equal(t, 449, n)
}

func TestDecodeWorkedExample(t *testing.T) {
	t.Parallel()
	a := mustLoad(t)
	// body-bege-bsod: box x∈[9,23), y∈[21,31]; 58 px of colour 1 (rows 21–24
	// and x=9,10 of row 25), then one transparent pixel at (11,25), then 13
	// px of colour 1 wrapping to x=9,10 of row 26.
	p := a.Parts(Body)[a.Index(Body, "body-bege-bsod")]
	require.Equal(t, [4]int{21, 23, 31, 9}, [4]int{p.Top, p.Right, p.Bottom, p.Left})
	require.Equal(t, 154, p.RunTotal)
	require.Equal(t, color.RGBA{0xc5, 0xb9, 0xa1, 0xff}, a.Palette[1])
	at := map[[2]int]uint8{}
	for _, px := range p.Pixels {
		at[[2]int{int(px.X), int(px.Y)}] = px.Color
	}
	for y := 21; y <= 24; y++ {
		for x := 9; x < 23; x++ {
			require.Equal(t, uint8(1), at[[2]int{x, y}], "(%d,%d)", x, y)
		}
	}
	require.Equal(t, uint8(1), at[[2]int{10, 25}])
	require.NotContains(t, at, [2]int{11, 25})
	for x := 12; x < 23; x++ {
		require.Equal(t, uint8(1), at[[2]int{x, 25}])
	}
	require.Equal(t, uint8(1), at[[2]int{9, 26}])
	require.Equal(t, uint8(1), at[[2]int{10, 26}])
}

func TestSeederREADMEVector(t *testing.T) {
	t.Parallel()
	a := mustLoad(t)
	// The @nouns/assets 0.10.0 README example (getNounSeedFromBlockHash).
	hash, err := hex.DecodeString("5014101691e81d79a2eba711e698118e1a90c9be7acb2f40d7f200134ee53e01")
	require.NoError(t, err)
	var block Word
	copy(block[:], hash)
	pr := Pseudorandom(block, IntWord(116))

	launch := SliceSeed(pr, [NumLayers]int{2, 30, 137, 234, 21})
	require.Equal(t, Seed{1, 28, 120, 95, 15}, launch)
	require.Equal(t, [NumLayers]string{"warm", "body-teal", "accessory-txt-noun-multicolor", "head-goat", "glasses-square-red"},
		a.Traits(launch))

	// Today's counts give a different Noun from the same pr.
	require.Equal(t, Seed{1, 28, 131, 117, 12}, SliceSeed(pr, a.Counts()))
}

func TestIntWord(t *testing.T) {
	t.Parallel()
	w := IntWord(-1)
	for _, b := range w {
		require.Equal(t, byte(0xff), b)
	}
	w = IntWord(258)
	require.Equal(t, byte(1), w[30])
	require.Equal(t, byte(2), w[31])
	require.Zero(t, w[0])
}

func pixelHash(tb testing.TB, a *Art, s Seed) string {
	tb.Helper()
	img, err := a.Render(s, Size, Size)
	require.NoError(tb, err)
	sum := sha256.Sum256(img.Pix)
	return hex.EncodeToString(sum[:])
}

func TestRenderGolden(t *testing.T) {
	t.Parallel()
	a := mustLoad(t)
	tests := []struct {
		seed   int64
		traits [NumLayers]string
		want   string
	}{
		{0, [NumLayers]string{"warm", "body-teal", "accessory-stripes-red-cold", "head-maze", "glasses-square-blue-med-saturated"},
			"492dd1e26b07bb64c41f9fda40ad26902868d4b5ce8f665e77dda8f70140afbd"},
		{42, [NumLayers]string{"cool", "body-hotbrown", "accessory-txt-pi", "head-saw", "glasses-square-pink-purple-multi"},
			"4da4eebf750ebc852556f110779c14f40220f2a935faf58b542093121e9b3668"},
		{-7, [NumLayers]string{"cool", "body-grayscale-1", "accessory-glasses-logo-sun", "head-cookie", "glasses-square-magenta"},
			"816bf3a112465856a44673dabb540366795eb373ceb28923632ae517a55cf277"},
	}
	for _, tt := range tests {
		s := a.SeedFromInt(tt.seed)
		require.Equal(t, tt.traits, a.Traits(s), "seed %d", tt.seed)
		require.Equal(t, tt.want, pixelHash(t, a, s), "seed %d", tt.seed)
	}
}

func TestRenderScaledMatchesGrid(t *testing.T) {
	t.Parallel()
	a := mustLoad(t)
	s := a.SeedFromInt(5)
	small, err := a.Render(s, 32, 32)
	require.NoError(t, err)
	big, err := a.Render(s, 512, 512)
	require.NoError(t, err)
	for y := range 512 {
		for x := range 512 {
			require.Equal(t, small.RGBAAt(x/16, y/16), big.RGBAAt(x, y))
		}
	}
	// Non-square: 96×64 → scale 2, centred with 16 px of background each side.
	wide, err := a.Render(s, 96, 64)
	require.NoError(t, err)
	bg := a.backgrounds[s[Background]]
	for y := range 64 {
		for x := range 16 {
			require.Equal(t, bg, wide.RGBAAt(x, y))
			require.Equal(t, bg, wide.RGBAAt(95-x, y))
		}
		for x := 16; x < 80; x++ {
			require.Equal(t, small.RGBAAt((x-16)/2, y/2), wide.RGBAAt(x, y))
		}
	}
}

func TestSelect(t *testing.T) {
	t.Parallel()
	a := mustLoad(t)
	tests := []struct {
		prompt string
		want   map[Layer]string
	}{
		{"shark head", map[Layer]string{Head: "head-shark"}},
		{"red noggles", map[Layer]string{Glasses: "glasses-square-red"}},
		{"a Shark head wearing red noggles on a teal body", map[Layer]string{Head: "head-shark", Glasses: "glasses-square-red", Body: "body-teal"}},
		{"a whale head", map[Layer]string{Head: "head-whale"}},
		{"whale alive head, blue glasses", map[Layer]string{Head: "head-whale-alive", Glasses: "glasses-square-blue"}},
		{"a glasses big head", map[Layer]string{Head: "head-glasses-big"}},
		{"glasses-square-honey", map[Layer]string{Glasses: "glasses-square-honey"}},
		{"a cat", map[Layer]string{Head: "head-cat"}},
		{"no accessory, warm background", map[Layer]string{Accessory: "accessory-none", Background: "warm"}},
		{"a body bege accessory", map[Layer]string{Accessory: "body-bege"}},
		{"a portrait in pixel art", map[Layer]string{}},
	}
	for _, tt := range tests {
		sel := a.Select(tt.prompt)
		got := map[Layer]string{}
		for _, l := range Layers() {
			if sel.Pinned.Has(l) {
				got[l] = a.Parts(l)[sel.Seed[l]].Name
			}
		}
		require.Equal(t, tt.want, got, tt.prompt)
	}
}

func TestDescribeRoundTripsEveryPart(t *testing.T) {
	t.Parallel()
	a := mustLoad(t)
	for _, l := range Layers() {
		for i := range a.Count(l) {
			var s Seed
			s[l] = i
			sel := a.Select(a.Describe(s))
			require.Equal(t, AllLayers, sel.Pinned, a.Describe(s))
			require.Equal(t, s, sel.Seed, a.Describe(s))
		}
	}
}

func TestMatchRenderedNouns(t *testing.T) {
	t.Parallel()
	a := mustLoad(t)
	for seed := int64(0); seed < 60; seed++ {
		s := a.SeedFromInt(seed)
		img, err := a.Render(s, 320, 200)
		require.NoError(t, err)
		g := GridFromImage(img)
		got, exact := a.Match(&g)
		require.True(t, exact, "seed %d: %v vs %v", seed, a.Traits(s), a.Traits(got))
		require.Equal(t, a.Compose(s, AllLayers), a.Compose(got, AllLayers))
	}
}

func BenchmarkRender512(b *testing.B) {
	a := mustLoad(b)
	s := a.SeedFromInt(1)
	for b.Loop() {
		if _, err := a.Render(s, 512, 512); err != nil {
			b.Fatal(err)
		}
	}
}
