package nouns

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/nounsart"
	"github.com/nounsai/sdserver/shared/apperr"
)

func newBackend(tb testing.TB) *Backend {
	tb.Helper()
	b, err := New(Options{})
	require.NoError(tb, err)
	return b
}

func rgba(tb testing.TB, img image.Image) *image.RGBA {
	tb.Helper()
	r, ok := img.(*image.RGBA)
	require.True(tb, ok, "want *image.RGBA, got %T", img)
	return r
}

func generate(tb testing.TB, b *Backend, req inference.ImageRequest) inference.ImageResult {
	tb.Helper()
	res, err := b.Generate(context.Background(), req)
	require.NoError(tb, err)
	return res
}

func traitName(tb testing.TB, res inference.ImageResult, sample int, layer string) string {
	tb.Helper()
	traits, ok := res.Info["traits"].([]map[string]any)
	require.True(tb, ok)
	return traits[sample][layer].(map[string]any)["name"].(string)
}

func requireInvalid(tb testing.TB, err error) {
	tb.Helper()
	require.Error(tb, err)
	require.Equal(tb, apperr.KindInvalid, apperr.KindOf(err), "%v", err)
}

// testImage is a w×h image: left half c1, right half c2.
func testImage(w, h int, c1, c2 color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, image.Rect(0, 0, w/2, h), image.NewUniform(c1), image.Point{}, draw.Src)
	draw.Draw(img, image.Rect(w/2, 0, w, h), image.NewUniform(c2), image.Point{}, draw.Src)
	return img
}

var (
	red  = color.RGBA{R: 220, G: 30, B: 40, A: 255}
	blue = color.RGBA{R: 20, G: 60, B: 200, A: 255}
)

func TestImplementsBackend(t *testing.T) {
	t.Parallel()
	var b inference.Backend = newBackend(t)
	require.Equal(t, "nouns", b.Name())
}

func TestSupports(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	_, err := exec.LookPath("ffmpeg")
	require.NoError(t, err, "ffmpeg is required for the audio tests")
	unsupported := map[inference.Op]bool{
		inference.OpControlNetDepth: true, inference.OpControlNetSegment: true,
		inference.OpAudioMelody: true, inference.OpAudioSplit: true,
	}
	for _, op := range inference.AllOps {
		require.Equal(t, !unsupported[op], b.Supports(op), op)
	}
	for op := range unsupported {
		var err error
		if strings.HasPrefix(string(op), "audio") {
			_, err = b.Audio(context.Background(), inference.AudioRequest{Op: op, Parent: []byte{1}})
		} else {
			_, err = b.Generate(context.Background(), inference.ImageRequest{Op: op, Init: testImage(64, 64, red, blue)})
		}
		require.ErrorIs(t, err, inference.ErrUnsupported, op)
	}
	noAudio, err := New(Options{FFmpegPath: "/nonexistent/ffmpeg"})
	require.NoError(t, err)
	require.False(t, noAudio.Supports(inference.OpTextToAudio))
	require.True(t, noAudio.Supports(inference.OpTxt2Img))
}

func TestTxt2ImgDeterministicAndGolden(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	req := inference.ImageRequest{Op: inference.OpTxt2Img, Seed: 42, Width: 32, Height: 32}
	r1 := generate(t, b, req)
	r2 := generate(t, b, req)
	require.Len(t, r1.Images, 1)
	require.Equal(t, rgba(t, r1.Images[0]).Pix, rgba(t, r2.Images[0]).Pix)
	// Same pixels as the nounsart golden for seed 42.
	sum := sha256.Sum256(rgba(t, r1.Images[0]).Pix)
	require.Equal(t, "4da4eebf750ebc852556f110779c14f40220f2a935faf58b542093121e9b3668", hex.EncodeToString(sum[:]))
	require.Equal(t, "head-saw", traitName(t, r1, 0, "head"))
	require.Equal(t, nounsart.DataVersion, r1.Info["art"])
	require.Equal(t, []int64{42}, r1.Info["seeds"])
}

func TestTxt2ImgPromptTraits(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	for seed := int64(0); seed < 5; seed++ {
		res := generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Seed: seed, Prompt: "a shark head with red noggles"})
		require.Equal(t, "head-shark", traitName(t, res, 0, "head"))
		require.Equal(t, "glasses-square-red", traitName(t, res, 0, "glasses"))
		// The other layers come from the seed.
		want := b.Art().SeedFromInt(seed)
		require.Equal(t, b.Art().Traits(want)[nounsart.Body], traitName(t, res, 0, "body"))
	}
}

func TestTxt2ImgSamplesDistinct(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	prompts := []string{
		"",
		"shark head, red noggles",
		// Pins every layer: samples must still differ.
		b.Art().Describe(b.Art().SeedFromInt(3)),
	}
	for _, p := range prompts {
		res := generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Seed: 7, Samples: 4, Prompt: p, Width: 64, Height: 64})
		require.Len(t, res.Images, 4)
		seen := map[[32]byte]bool{}
		for _, img := range res.Images {
			sum := sha256.Sum256(rgba(t, img).Pix)
			require.False(t, seen[sum], "duplicate sample for %q", p)
			seen[sum] = true
		}
	}
	res := generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Seed: 7, Samples: 3})
	require.Equal(t, []int64{7, 8, 9}, res.Info["seeds"])
	_, err := b.Generate(context.Background(), inference.ImageRequest{Op: inference.OpTxt2Img, Samples: MaxSamples + 1})
	requireInvalid(t, err)
}

func TestTxt2ImgSizes(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	tests := []struct{ w, h, wantW, wantH int }{
		{0, 0, 512, 512},
		{512, 512, 512, 512},
		{500, 300, 512, 288},
		{10, 10, 32, 32},
		{96, 64, 96, 64},
		{1000, 1, 992, 32},
	}
	for _, tt := range tests {
		res := generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Width: tt.w, Height: tt.h})
		require.Equal(t, image.Pt(tt.wantW, tt.wantH), res.Images[0].Bounds().Size(), "%dx%d", tt.w, tt.h)
	}
	// Pixels stay crisp: a 512 render is the 32 render scaled ×16.
	small := rgba(t, generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Width: 32, Height: 32}).Images[0])
	big := rgba(t, generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Width: 512, Height: 512}).Images[0])
	for y := 0; y < 512; y += 7 {
		for x := 0; x < 512; x += 5 {
			require.Equal(t, small.RGBAAt(x/16, y/16), big.RGBAAt(x, y))
		}
	}
	for _, bad := range [][2]int{{-1, 32}, {32, MaxSide + 1}} {
		_, err := b.Generate(context.Background(), inference.ImageRequest{Op: inference.OpTxt2Img, Width: bad[0], Height: bad[1]})
		requireInvalid(t, err)
	}
	_, err := b.Generate(context.Background(), inference.ImageRequest{Op: inference.OpTxt2Img, Width: 4096, Height: 4096, Samples: 8})
	requireInvalid(t, err)
}

func inPalette(b *Backend, c color.RGBA) bool {
	for _, p := range b.colors {
		if p == c {
			return true
		}
	}
	return false
}

func TestImg2Img(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	in := testImage(100, 70, red, blue)
	full := rgba(t, generate(t, b, inference.ImageRequest{Op: inference.OpImg2Img, Init: in, Strength: 1}).Images[0])
	require.Equal(t, image.Pt(96, 64), full.Bounds().Size())
	// 64 is the short side: cells are 2×2, and every pixel is a Nouns colour.
	for y := 0; y < 64; y++ {
		for x := 0; x < 96; x++ {
			c := full.RGBAAt(x, y)
			require.True(t, inPalette(b, c), "%v at (%d,%d)", c, x, y)
			require.Equal(t, full.RGBAAt(x&^1, y&^1), c)
		}
	}
	// Away from the seam, the red half maps to the Nouns colour nearest red.
	require.Equal(t, nounsart.Nearest(b.colors, red), full.RGBAAt(4, 4))
	require.Equal(t, nounsart.Nearest(b.colors, blue), full.RGBAAt(90, 4))

	// Strength 0 returns the input; 0.5 lies between.
	exact := testImage(64, 64, red, blue)
	zero := rgba(t, generate(t, b, inference.ImageRequest{Op: inference.OpImg2Img, Init: exact, Strength: 0}).Images[0])
	require.Equal(t, exact.Pix, zero.Pix)
	half := rgba(t, generate(t, b, inference.ImageRequest{Op: inference.OpImg2Img, Init: exact, Strength: 0.5}).Images[0])
	target := nounsart.Nearest(b.colors, red)
	require.Equal(t, lerp(red, target, 0.5), half.RGBAAt(3, 3))

	_, err := b.Generate(context.Background(), inference.ImageRequest{Op: inference.OpImg2Img, Init: exact, Strength: 2})
	requireInvalid(t, err)
	_, err = b.Generate(context.Background(), inference.ImageRequest{Op: inference.OpImg2Img, Init: testImage(20, 40, red, blue), Strength: 1})
	requireInvalid(t, err)
	_, err = b.Generate(context.Background(), inference.ImageRequest{Op: inference.OpImg2Img})
	requireInvalid(t, err)
}

func TestInpaint(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	in := testImage(128, 96, red, blue)
	mask := image.NewGray(image.Rect(0, 0, 128, 96))
	draw.Draw(mask, image.Rect(40, 20, 90, 80), image.NewUniform(color.White), image.Point{}, draw.Src)
	res := generate(t, b, inference.ImageRequest{Op: inference.OpInpaint, Init: in, Mask: mask, Seed: 3, Prompt: "shark head", Samples: 2})
	require.Len(t, res.Images, 2)
	s := b.Art().Select("shark head").Apply(b.Art().SeedFromInt(3))
	noun, err := b.Art().Render(s, 128, 96)
	require.NoError(t, err)
	out := rgba(t, res.Images[0])
	require.Equal(t, in.Bounds(), out.Bounds())
	for y := 0; y < 96; y++ {
		for x := 0; x < 128; x++ {
			if image.Pt(x, y).In(image.Rect(40, 20, 90, 80)) {
				require.Equal(t, noun.RGBAAt(x, y), out.RGBAAt(x, y))
			} else {
				require.Equal(t, in.RGBAAt(x, y), out.RGBAAt(x, y))
			}
		}
	}
	require.NotEqual(t, out.Pix, rgba(t, res.Images[1]).Pix)

	// An alpha mask of a different size is scaled to the input.
	alpha := image.NewAlpha(image.Rect(0, 0, 64, 48))
	draw.Draw(alpha, image.Rect(0, 0, 32, 48), image.NewUniform(color.Alpha{A: 255}), image.Point{}, draw.Src)
	out = rgba(t, generate(t, b, inference.ImageRequest{Op: inference.OpInpaint, Init: in, Mask: alpha, Seed: 3}).Images[0])
	require.Equal(t, in.RGBAAt(100, 50), out.RGBAAt(100, 50))

	_, err = b.Generate(context.Background(), inference.ImageRequest{Op: inference.OpInpaint, Init: in})
	requireInvalid(t, err)
}

func TestPix2Pix(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	in := testImage(64, 64, red, blue)
	out := rgba(t, generate(t, b, inference.ImageRequest{Op: inference.OpPix2Pix, Init: in, Prompt: "give it a shark head"}).Images[0])
	art := b.Art()
	shark := art.Parts(nounsart.Head)[art.Index(nounsart.Head, "head-shark")]
	painted := map[image.Point]bool{}
	for _, px := range shark.Pixels {
		p := image.Pt(int(px.X)*2, int(px.Y)*2)
		painted[p] = true
		require.Equal(t, art.Palette[px.Color], out.RGBAAt(p.X, p.Y))
	}
	for y := 0; y < 64; y += 2 {
		for x := 0; x < 64; x += 2 {
			if !painted[image.Pt(x, y)] {
				require.Equal(t, in.RGBAAt(x, y), out.RGBAAt(x, y))
			}
		}
	}
	_, err := b.Generate(context.Background(), inference.ImageRequest{Op: inference.OpPix2Pix, Init: in, Prompt: "make it nicer"})
	requireInvalid(t, err)
}

func TestOutlines(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	flat := testImage(64, 64, red, red)
	res := generate(t, b, inference.ImageRequest{Op: inference.OpControlNetOutlines, Init: flat, Seed: 9})
	plain, err := b.Art().Render(b.Art().SeedFromInt(9), 64, 64)
	require.NoError(t, err)
	require.Equal(t, plain.Pix, rgba(t, res.Images[0]).Pix)

	edged := testImage(64, 64, color.RGBA{A: 255}, color.RGBA{R: 255, G: 255, B: 255, A: 255})
	count := func(strength float64) int {
		out := rgba(t, generate(t, b, inference.ImageRequest{Op: inference.OpControlNetOutlines, Init: edged, Seed: 9, Strength: strength}).Images[0])
		n := 0
		for y := 0; y < 64; y++ {
			for x := 0; x < 64; x++ {
				if out.RGBAAt(x, y) != plain.RGBAAt(x, y) {
					n++
					require.InDelta(t, 32, x, 4.5, "change away from the edge at (%d,%d)", x, y)
				}
			}
		}
		return n
	}
	thin, thick := count(0), count(3)
	require.Positive(t, thin)
	require.Greater(t, thick, thin)
	_, err = b.Generate(context.Background(), inference.ImageRequest{Op: inference.OpControlNetOutlines, Init: edged, Strength: 6})
	requireInvalid(t, err)
}

func TestUpscale(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	in := testImage(50, 30, red, blue)
	for _, s := range []int{2, 4} {
		out, err := b.Upscale(context.Background(), inference.UpscaleRequest{Image: in, Scale: s})
		require.NoError(t, err)
		require.Equal(t, image.Pt(50*s, 30*s), out.Bounds().Size())
		require.Equal(t, red, rgba(t, out).RGBAAt(2, 2))
	}
	_, err := b.Upscale(context.Background(), inference.UpscaleRequest{Image: in, Scale: 3})
	requireInvalid(t, err)
	_, err = b.Upscale(context.Background(), inference.UpscaleRequest{Image: testImage(1025, 10, red, blue), Scale: 4})
	requireInvalid(t, err)
}

func TestInterrogate(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	for seed := int64(0); seed < 10; seed++ {
		res := generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Seed: seed, Width: 640, Height: 480})
		desc, err := b.Interrogate(context.Background(), "", res.Images[0])
		require.NoError(t, err)
		// Head and glasses are always visible, so they are named exactly
		// (a body under a body-shaped accessory may not be).
		s := b.Art().SeedFromInt(seed)
		require.Contains(t, desc, b.Art().Phrase(nounsart.Head, s[nounsart.Head])+", "+b.Art().Phrase(nounsart.Glasses, s[nounsart.Glasses]))
		// The description renders the same Noun again.
		again := generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Seed: seed + 1000, Prompt: desc, Width: 640, Height: 480})
		require.Equal(t, rgba(t, res.Images[0]).Pix, rgba(t, again.Images[0]).Pix)
	}
	// Nearest match for an upscaled (blurred) Noun.
	res := generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Seed: 1, Prompt: "shark head, red noggles", Width: 256, Height: 256})
	up, err := b.Upscale(context.Background(), inference.UpscaleRequest{Image: res.Images[0], Scale: 2})
	require.NoError(t, err)
	desc, err := b.Interrogate(context.Background(), "", up)
	require.NoError(t, err)
	require.Contains(t, desc, "a shark head, square red noggles")

	_, err = b.Interrogate(context.Background(), "", testImage(16, 16, red, blue))
	requireInvalid(t, err)
}

func TestExtendPrompt(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	ctx := context.Background()
	p1, err := b.ExtendPrompt(ctx, "a shark head")
	require.NoError(t, err)
	p2, err := b.ExtendPrompt(ctx, "a shark head")
	require.NoError(t, err)
	require.Equal(t, p1, p2)
	require.True(t, strings.HasPrefix(p1, "a shark head, "), p1)
	require.Contains(t, p1, "noggles")
	require.Contains(t, p1, "body")
	sel := b.Art().Select(p1)
	require.Equal(t, "head-shark", b.Art().Parts(nounsart.Head)[sel.Seed[nounsart.Head]].Name)
	require.True(t, sel.Pinned.Has(nounsart.Glasses))
	require.True(t, sel.Pinned.Has(nounsart.Body))

	other, err := b.ExtendPrompt(ctx, "a cat")
	require.NoError(t, err)
	require.NotEqual(t, strings.TrimPrefix(p1, "a shark head"), strings.TrimPrefix(other, "a cat"))
	// Style words never name a head.
	for _, s := range styleWords() {
		require.Zero(t, b.Art().Select(s).Pinned, s)
	}
	empty, err := b.ExtendPrompt(ctx, "")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(empty, "a noun with "), empty)
	_, err = b.ExtendPrompt(ctx, strings.Repeat("x", MaxExtendedPromptLen+1))
	requireInvalid(t, err)
}

func TestSegment(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	img := testImage(40, 30, red, blue)
	mask, err := b.Segment(context.Background(), inference.SegmentRequest{Image: img, Points: []image.Point{{5, 5}}})
	require.NoError(t, err)
	require.Len(t, mask, 40*30)
	for y := 0; y < 30; y++ {
		for x := 0; x < 40; x++ {
			require.Equal(t, x < 20, mask[y*40+x], "(%d,%d)", x, y)
		}
	}
	// Two points in both regions select everything.
	mask, err = b.Segment(context.Background(), inference.SegmentRequest{Image: img, Points: []image.Point{{5, 5}, {30, 5}}})
	require.NoError(t, err)
	for _, on := range mask {
		require.True(t, on)
	}
	// Points use the image's own coordinates.
	shifted := image.NewRGBA(image.Rect(10, 10, 50, 40))
	draw.Draw(shifted, shifted.Bounds(), img, image.Point{}, draw.Src)
	mask2, err := b.Segment(context.Background(), inference.SegmentRequest{Image: shifted, Points: []image.Point{{45, 15}}})
	require.NoError(t, err)
	require.False(t, mask2[0])
	require.True(t, mask2[39])

	_, err = b.Segment(context.Background(), inference.SegmentRequest{Image: img, Points: []image.Point{{40, 5}}})
	requireInvalid(t, err)
	_, err = b.Segment(context.Background(), inference.SegmentRequest{Image: img})
	requireInvalid(t, err)
}

func TestInterpolate(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	from := rgba(t, generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Seed: 1, Width: 64, Height: 64}).Images[0])
	to := rgba(t, generate(t, b, inference.ImageRequest{Op: inference.OpTxt2Img, Seed: 2, Width: 128, Height: 128}).Images[0])
	frames, err := b.Interpolate(context.Background(), inference.InterpolateRequest{From: from, To: to, N: 3})
	require.NoError(t, err)
	require.Len(t, frames, 3)
	for _, f := range frames {
		require.Equal(t, from.Bounds(), f.Bounds())
		fr := rgba(t, f)
		for y := 0; y < 64; y++ {
			for x := 0; x < 64; x++ {
				require.True(t, inPalette(b, fr.RGBAAt(x, y)))
			}
		}
	}
	// Where both keyframes agree on a Nouns colour, every frame keeps it.
	require.Equal(t, from.RGBAAt(0, 0) == to.RGBAAt(0, 0), rgba(t, frames[1]).RGBAAt(0, 0) == from.RGBAAt(0, 0))
	require.NotEqual(t, rgba(t, frames[0]).Pix, rgba(t, frames[2]).Pix)
	_, err = b.Interpolate(context.Background(), inference.InterpolateRequest{From: from, To: to, N: 0})
	requireInvalid(t, err)
}

func probeDuration(tb testing.TB, mp3 []byte) float64 {
	tb.Helper()
	// ffprobe needs a seekable file to read the MP3's duration.
	path := filepath.Join(tb.TempDir(), "audio.mp3")
	require.NoError(tb, os.WriteFile(path, mp3, 0o600))
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,sample_rate",
		"-of", "default=noprint_wrappers=1", path).Output()
	require.NoError(tb, err)
	s := string(out)
	require.Contains(tb, s, "codec_name=mp3")
	require.Contains(tb, s, "sample_rate=44100")
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "duration="); ok {
			d, err := strconv.ParseFloat(v, 64)
			require.NoError(tb, err)
			return d
		}
	}
	tb.Fatalf("no duration in %q", s)
	return 0
}

func TestAudio(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	ctx := context.Background()
	req := inference.AudioRequest{Op: inference.OpTextToAudio, Prompt: "a happy noun song", Seed: 5, DurationSec: 3}
	res, err := b.Audio(ctx, req)
	require.NoError(t, err)
	require.Len(t, res.Tracks, 1)
	require.InDelta(t, 3.0, probeDuration(t, res.Tracks[0]), 0.2)

	// Real audio: decoded PCM is not silent, and is deterministic.
	pcm, err := b.decodeMP3(ctx, res.Tracks[0])
	require.NoError(t, err)
	var peak int
	for _, v := range pcm {
		peak = max(peak, int(v), -int(v))
	}
	require.Greater(t, peak, 5000)
	again, err := b.Audio(ctx, req)
	require.NoError(t, err)
	require.Equal(t, res.Tracks[0], again.Tracks[0])
	other := tuneFor("another prompt", 5)
	require.NotEqual(t, tuneFor(req.Prompt, req.Seed).hash, other.hash)

	ext, err := b.Audio(ctx, inference.AudioRequest{Op: inference.OpAudioExtend, Prompt: req.Prompt, Seed: 5, DurationSec: 2, Parent: res.Tracks[0]})
	require.NoError(t, err)
	require.InDelta(t, 5.0, probeDuration(t, ext.Tracks[0]), 0.2)

	_, err = b.Audio(ctx, inference.AudioRequest{Op: inference.OpAudioExtend, DurationSec: 1, Parent: []byte("not audio")})
	requireInvalid(t, err)
	_, err = b.Audio(ctx, inference.AudioRequest{Op: inference.OpTextToAudio, DurationSec: MaxAudioSec + 1})
	requireInvalid(t, err)
	_, err = b.Audio(ctx, inference.AudioRequest{Op: inference.OpAudioSplit, Parent: res.Tracks[0]})
	require.True(t, errors.Is(err, inference.ErrUnsupported))
}

func BenchmarkRender512(b *testing.B) {
	be := newBackend(b)
	req := inference.ImageRequest{Op: inference.OpTxt2Img, Seed: 1, Prompt: "shark head, red noggles", Width: 512, Height: 512}
	for b.Loop() {
		if _, err := be.Generate(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
