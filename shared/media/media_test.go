package media_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/media"
)

// hugePNG returns a PNG signature and an IHDR chunk claiming w×h RGBA
// pixels, followed by a tiny IDAT: a header that lies about its size.
func hugePNG(w, h uint32) []byte {
	var buf bytes.Buffer
	buf.Write([]byte("\x89PNG\r\n\x1a\n"))
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&buf, binary.BigEndian, uint32(len(data)))
		c := append([]byte(typ), data...)
		buf.Write(c)
		_ = binary.Write(&buf, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 6 // 8-bit RGBA
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return buf.Bytes()
}

func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := 0; x < w; x++ {
		img.Set(x, x%h, color.RGBA{200, 10, 10, 255})
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

func TestCheckRejectsHugeHeaderWithoutAllocating(t *testing.T) {
	// Not parallel: it measures the heap.
	data := hugePNG(30000, 30000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := media.Decode(data, media.DefaultLimits)
	runtime.ReadMemStats(&after)
	require.Error(t, err)
	require.Equal(t, apperr.KindInvalid, apperr.KindOf(err))
	require.Contains(t, err.(*apperr.Error).Message, "30000×30000")
	// Decoding would need 3.6 GB; the check must stay within a few MB.
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(4<<20))
}

func TestCheckAndDecode(t *testing.T) {
	t.Parallel()
	good := testPNG(t, 300, 120)
	cases := []struct {
		name string
		data []byte
		msg  string
	}{
		{"empty", nil, "empty"},
		{"text", []byte("root:x:0:0:root:/root:/bin/bash\n"), "not a supported image"},
		{"truncated", good[:len(good)/2], "truncated or corrupt"},
		{"header only", good[:40], "truncated or corrupt"},
		{"too wide", hugePNG(5000, 10), "5000×10"},
		{"zero", hugePNG(0, 10), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := media.Decode(tc.data, media.DefaultLimits)
			require.Error(t, err)
			require.Equal(t, apperr.KindInvalid, apperr.KindOf(err))
			ae, _ := apperr.As(err)
			require.Contains(t, ae.Message, tc.msg)
		})
	}
	img, info, err := media.Decode(good, media.DefaultLimits)
	require.NoError(t, err)
	require.Equal(t, media.Info{Format: "png", Width: 300, Height: 120, DecodedBytes: 300 * 120 * 4}, info)
	require.Equal(t, 300, img.Bounds().Dx())
}

func TestThumbnail(t *testing.T) {
	t.Parallel()
	cases := []struct{ w, h, tw, th int }{
		{300, 120, 100, 40},
		{120, 300, 40, 100},
		{1000, 1, 100, 1}, // never rounds to 0 (legacy C16)
		{1, 1000, 1, 100},
		{50, 20, 50, 20}, // small images keep their size
		{100, 100, 100, 100},
	}
	for _, c := range cases {
		img := image.NewRGBA(image.Rect(0, 0, c.w, c.h))
		th := media.Thumbnail(img, media.ThumbnailSize)
		require.Equal(t, image.Pt(c.tw, c.th), th.Bounds().Size(), "%dx%d", c.w, c.h)
	}
	// Grayscale input works too (legacy C16).
	gray := image.NewGray(image.Rect(0, 0, 400, 200))
	b, err := media.ThumbnailPNG(gray)
	require.NoError(t, err)
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, 100, cfg.Width)
	require.Equal(t, 50, cfg.Height)
}

func TestJPEGDecodes(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, jpeg.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 64, 32)), nil))
	_, info, err := media.Decode(buf.Bytes(), media.DefaultLimits)
	require.NoError(t, err)
	require.Equal(t, "jpeg", info.Format)
}

func TestHash(t *testing.T) {
	t.Parallel()
	require.Equal(t, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", media.Hash(nil))
}

func TestSanitizeFilename(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"../../etc/passwd":       "passwd",
		"..\\..\\windows\\a.mp3": "a.mp3",
		"song.mp3":               "song.mp3",
		"my song (1).mp3":        "my song _1_.mp3",
		"..":                     "upload",
		"":                       "upload",
		"/":                      "upload",
		".hidden.mp3":            "hidden.mp3",
		"a\x00b\nc.mp3":          "a_b_c.mp3",
		"héllo.wav":              "héllo.wav",
	}
	for in, want := range cases {
		require.Equal(t, want, media.SanitizeFilename(in, "upload"), in)
	}
	long := media.SanitizeFilename(string(bytes.Repeat([]byte("é"), 200)), "upload")
	require.LessOrEqual(t, len(long), media.MaxFilenameLen)
}

func TestSniff(t *testing.T) {
	t.Parallel()
	ok := map[string][]byte{
		"mp3":  append([]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), 0xFF, 0xFB, 0x90, 0x64, 0, 0, 0, 0, 0, 0, 0, 0),
		"wav":  []byte("RIFF\x24\x00\x00\x00WAVEfmt "),
		"ogg":  []byte("OggS\x00\x02\x00\x00\x00\x00\x00\x00"),
		"flac": []byte("fLaC\x00\x00\x00\x22\x00\x00\x00\x00"),
	}
	for want, data := range ok {
		got, err := media.SniffAudio(data)
		require.NoError(t, err, want)
		require.Equal(t, want, got)
	}
	frame := []byte{0xFF, 0xFB, 0x90, 0x64, 0, 0, 0, 0, 0, 0, 0, 0}
	got, err := media.SniffAudio(frame)
	require.NoError(t, err)
	require.Equal(t, "mp3", got)
	hls := []byte("ID3\x04\x00\x00\x00\x00\x00\x00#EXTM3U\n#EXTINF:3,\n/etc/secret.mp3\n#EXT-X-ENDLIST\n")
	junk := append([]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), make([]byte, 64)...)
	hugeTag := []byte("ID3\x04\x00\x00\x7f\x7f\x7f\x7f#EXTM3U\n")
	for _, bad := range [][]byte{nil, []byte("hello world, not audio"), testPNG(t, 2, 2), hls, junk, hugeTag} {
		_, err := media.SniffAudio(bad)
		require.Equal(t, apperr.KindInvalid, apperr.KindOf(err))
	}
	v, err := media.SniffVideo([]byte("\x00\x00\x00\x18ftypmp42\x00\x00"))
	require.NoError(t, err)
	require.Equal(t, "mp4", v)
	_, err = media.SniffVideo([]byte("not a video at all"))
	require.Equal(t, apperr.KindInvalid, apperr.KindOf(err))
}

// TestClip writes a small test clip with ffmpeg and returns its bytes.
func testClip(t *testing.T, seconds string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "clip.mp4")
	cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
		"testsrc=duration="+seconds+":size=64x48:rate=10", "-pix_fmt", "yuv420p", out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "ffmpeg (Debian package ffmpeg) must be installed: %s", b)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	return data
}

func TestProbe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := media.FFmpeg{}
	info, err := f.Probe(ctx, testClip(t, "2.5"), media.DefaultLimits)
	require.NoError(t, err)
	require.InDelta(t, 2.5, info.Duration, 0.15)
	for _, fr := range [][]byte{info.First, info.Last} {
		cfg, err := png.DecodeConfig(bytes.NewReader(fr))
		require.NoError(t, err)
		require.Equal(t, 64, cfg.Width)
		require.Equal(t, 48, cfg.Height)
	}
	require.NotEqual(t, info.First, info.Last)

	_, err = f.Probe(ctx, []byte("\x00\x00\x00\x18ftypmp42 garbage that is no video"), media.DefaultLimits)
	require.Equal(t, apperr.KindInvalid, apperr.KindOf(err))

	missing := media.FFmpeg{FFprobe: "/nonexistent/ffprobe"}
	_, err = missing.Probe(ctx, []byte("\x00\x00\x00\x18ftypmp42 needs ffprobe"), media.DefaultLimits)
	require.Equal(t, apperr.KindUnavailable, apperr.KindOf(err))
}

// pixelArt returns a w×h opaque RGBA of 16×16 blocks in up to n colours.
func pixelArt(w, h, n int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			k := (x/16*7 + y/16*13) % n
			img.SetRGBA(x, y, color.RGBA{uint8(k * 37), uint8(k * 91), uint8(k * 13), 255})
		}
	}
	return img
}

// samePixels requires a and b to hold the same non-premultiplied colours
// (b's bounds start at 0,0, as a decoded PNG's do).
func samePixels(t *testing.T, a, b image.Image) {
	t.Helper()
	r := a.Bounds()
	require.Equal(t, r.Size(), b.Bounds().Size())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			ca := color.NRGBAModel.Convert(a.At(x, y))
			cb := color.NRGBAModel.Convert(b.At(x-r.Min.X, y-r.Min.Y))
			if ca != cb {
				require.Equal(t, ca, cb, "pixel %d,%d", x, y)
			}
		}
	}
}

func TestEncodePNGIsLossless(t *testing.T) {
	t.Parallel()
	photo := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	for y := 0; y < 30; y++ {
		for x := 0; x < 40; x++ {
			photo.SetNRGBA(x, y, color.NRGBA{uint8(x * 6), uint8(y * 8), uint8(x + y), 255})
		}
	}
	translucent := pixelArt(64, 64, 5)
	translucent.SetRGBA(3, 3, color.RGBA{10, 20, 30, 128})
	transparent := pixelArt(64, 64, 5)
	transparent.SetRGBA(3, 3, color.RGBA{})
	nrgba := image.NewNRGBA(image.Rect(0, 0, 32, 16))
	for i := range nrgba.Pix {
		nrgba.Pix[i] = uint8(i % 3 * 100)
	}
	cases := []struct {
		name     string
		img      image.Image
		paletted bool
	}{
		{"pixel art", pixelArt(512, 512, 30), true},
		{"256 colours", pixelArt(512, 512, 256), true},
		{"one colour", pixelArt(17, 3, 1), true},
		{"offset bounds", pixelArt(64, 64, 9).SubImage(image.Rect(5, 7, 50, 60)), true},
		{"transparent pixel", transparent, true},
		{"nrgba with alpha", nrgba, true},
		{"translucent rgba", translucent, false},
		{"photo", photo, false},
		{"gray", image.NewGray(image.Rect(0, 0, 10, 10)), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data, err := media.EncodePNG(tc.img)
			require.NoError(t, err)
			got, err := png.Decode(bytes.NewReader(data))
			require.NoError(t, err)
			_, isPaletted := got.(*image.Paletted)
			require.Equal(t, tc.paletted, isPaletted)
			samePixels(t, tc.img, got)
		})
	}
}

func TestThumbnailAverages(t *testing.T) {
	t.Parallel()
	// Left half red, right half blue: the middle thumbnail columns mix.
	img := image.NewRGBA(image.Rect(10, 10, 310, 160))
	for y := 10; y < 160; y++ {
		for x := 10; x < 310; x++ {
			c := color.RGBA{255, 0, 0, 255}
			if x >= 160 {
				c = color.RGBA{0, 0, 255, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	th := media.Thumbnail(img, media.ThumbnailSize)
	require.Equal(t, image.Pt(100, 50), th.Bounds().Size())
	require.Equal(t, color.NRGBA{255, 0, 0, 255}, th.At(0, 0))
	require.Equal(t, color.NRGBA{255, 0, 0, 255}, th.At(49, 49))
	require.Equal(t, color.NRGBA{0, 0, 255, 255}, th.At(50, 0))
	require.Equal(t, color.NRGBA{0, 0, 255, 255}, th.At(99, 49))

	// 3 source pixels per thumbnail pixel, alternating columns: each
	// thumbnail pixel averages two of one colour and one of the other.
	stripes := image.NewNRGBA(image.Rect(0, 0, 300, 3))
	for x := 0; x < 300; x++ {
		v := uint8(0)
		if x%2 == 0 {
			v = 255
		}
		for y := 0; y < 3; y++ {
			stripes.SetNRGBA(x, y, color.NRGBA{v, v, v, 255})
		}
	}
	th = media.Thumbnail(stripes, media.ThumbnailSize)
	require.Equal(t, image.Pt(100, 1), th.Bounds().Size())
	require.Equal(t, color.NRGBA{170, 170, 170, 255}, th.At(0, 0))
	require.Equal(t, color.NRGBA{85, 85, 85, 255}, th.At(1, 0))

	// Alpha weights the colour: half transparent, half opaque green gives
	// pure green at half alpha.
	half := image.NewNRGBA(image.Rect(0, 0, 200, 200))
	for y := 0; y < 200; y++ {
		for x := 0; x < 200; x += 2 {
			half.SetNRGBA(x, y, color.NRGBA{0, 255, 0, 255})
			half.SetNRGBA(x+1, y, color.NRGBA{255, 0, 0, 0})
		}
	}
	th = media.Thumbnail(half, media.ThumbnailSize)
	require.Equal(t, color.NRGBA{0, 255, 0, 128}, th.At(7, 7))

	// Any image type works (the generic path): a uniform grey stays grey.
	gray := image.NewGray(image.Rect(0, 0, 1000, 333))
	for i := range gray.Pix {
		gray.Pix[i] = 77
	}
	th = media.Thumbnail(gray, media.ThumbnailSize)
	require.Equal(t, image.Pt(100, 33), th.Bounds().Size())
	require.Equal(t, color.NRGBA{77, 77, 77, 255}, th.At(99, 32))
}

// reportCPU reports the process's CPU time (user + system) per operation
// from now until the benchmark ends: unlike ns/op, it hardly moves when
// other processes load the machine.
func reportCPU(b *testing.B) {
	b.Helper()
	start := cpuTime(b)
	b.Cleanup(func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	})
}

func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	require.NoError(tb, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkEncodePNG512(b *testing.B) {
	img := pixelArt(512, 512, 30)
	reportCPU(b)
	for b.Loop() {
		if _, err := media.EncodePNG(img); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkThumbnailPNG512(b *testing.B) {
	img := pixelArt(512, 512, 30)
	reportCPU(b)
	for b.Loop() {
		if _, err := media.ThumbnailPNG(img); err != nil {
			b.Fatal(err)
		}
	}
}

// TestThumbnailMatchesAreaAverage compares Thumbnail with a direct
// floating-point area average on random opaque images of awkward sizes.
func TestThumbnailMatchesAreaAverage(t *testing.T) {
	t.Parallel()
	sizes := []image.Point{{512, 512}, {333, 101}, {101, 333}, {768, 512}, {1000, 7}, {257, 256}}
	for k, sz := range sizes {
		img := image.NewRGBA(image.Rect(3, 4, 3+sz.X, 4+sz.Y))
		seed := uint32(k + 1)
		for i := range img.Pix {
			seed = seed*1664525 + 1013904223
			img.Pix[i] = uint8(seed >> 24)
			if i%4 == 3 {
				img.Pix[i] = 255
			}
		}
		th := media.Thumbnail(img, media.ThumbnailSize).(*image.NRGBA)
		tw, tht := th.Rect.Dx(), th.Rect.Dy()
		fx, fy := float64(sz.X)/float64(tw), float64(sz.Y)/float64(tht)
		for ty := 0; ty < tht; ty++ {
			for tx := 0; tx < tw; tx++ {
				var sum [3]float64
				var area float64
				for y := int(float64(ty) * fy); y < sz.Y && float64(y) < float64(ty+1)*fy; y++ {
					oy := min(float64(y+1), float64(ty+1)*fy) - max(float64(y), float64(ty)*fy)
					for x := int(float64(tx) * fx); x < sz.X && float64(x) < float64(tx+1)*fx; x++ {
						ox := min(float64(x+1), float64(tx+1)*fx) - max(float64(x), float64(tx)*fx)
						c := img.RGBAAt(3+x, 4+y)
						sum[0] += float64(c.R) * ox * oy
						sum[1] += float64(c.G) * ox * oy
						sum[2] += float64(c.B) * ox * oy
						area += ox * oy
					}
				}
				got := th.NRGBAAt(tx, ty)
				for i, v := range []uint8{got.R, got.G, got.B} {
					require.InDelta(t, sum[i]/area, float64(v), 0.51, "%v thumbnail pixel %d,%d channel %d", sz, tx, ty, i)
				}
				require.Equal(t, uint8(255), got.A)
			}
		}
	}
}
