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
	"testing"

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
	require.Equal(t, media.Info{Format: "png", Width: 300, Height: 120}, info)
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
		"mp3":  append([]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), make([]byte, 10)...),
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
	for _, bad := range [][]byte{nil, []byte("hello world, not audio"), testPNG(t, 2, 2)} {
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
	_, err = missing.Probe(ctx, []byte("x"), media.DefaultLimits)
	require.Equal(t, apperr.KindUnavailable, apperr.KindOf(err))
}
