package media

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nounsai/sdserver/shared/apperr"
)

// FFmpeg runs the ffprobe and ffmpeg binaries (Debian package ffmpeg).
type FFmpeg struct {
	// FFprobe and FFmpeg are the binaries; "" means "ffprobe" and "ffmpeg"
	// on PATH.
	FFprobe, FFmpeg string
	// Timeout bounds each run; zero means 60s.
	Timeout time.Duration
	// TempDir holds the scratch files; "" means os.TempDir().
	TempDir string
}

// MaxVideoDuration is the longest video Duration accepts. Longer claims
// (a crafted container can claim years) are an Invalid error.
const MaxVideoDuration = 24 * time.Hour

// VideoInfo is what Probe learns about a video.
type VideoInfo struct {
	// Duration is the length in seconds.
	Duration float64
	// First and Last are the first and last frames as PNG.
	First, Last []byte
}

func (f FFmpeg) bin(name, def string) string {
	if name == "" {
		return def
	}
	return name
}

func (f FFmpeg) run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	t := f.Timeout
	if t <= 0 {
		t = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := stderr.Bytes()
		if len(msg) > 512 {
			msg = msg[len(msg)-512:]
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(bin), ctx.Err())
		}
		var ee *exec.Error
		if errors.As(err, &ee) || errors.Is(err, fs.ErrNotExist) {
			return nil, apperr.Wrap(apperr.KindUnavailable, "Video processing is unavailable", err)
		}
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(bin), err, bytes.TrimSpace(msg))
	}
	return out.Bytes(), nil
}

// Probe writes data to a scratch file and reads its duration (ffprobe) and
// its first and last frames (ffmpeg, as PNG). A file ffprobe cannot read,
// or one without a video stream, is an Invalid error. Frames are checked
// with Check against lim.
func (f FFmpeg) Probe(ctx context.Context, data []byte, lim Limits) (VideoInfo, error) {
	dir, err := os.MkdirTemp(f.TempDir, "video-*")
	if err != nil {
		return VideoInfo{}, fmt.Errorf("probe video: %w", err)
	}
	defer os.RemoveAll(dir)
	// ffprobe and ffmpeg read the file as the container its content was
	// sniffed as, and open nothing else (issue 13.6).
	format, err := SniffVideo(data)
	if err != nil {
		return VideoInfo{}, err
	}
	inArgs, ok := InputArgs(format)
	if !ok {
		return VideoInfo{}, apperr.Invalid("The file is not a supported video (MP4, MOV, WebM or AVI)")
	}
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		return VideoInfo{}, fmt.Errorf("probe video: %w", err)
	}
	dur, err := f.Duration(ctx, in, format)
	if err != nil {
		return VideoInfo{}, err
	}
	ffmpegIn := func(pre ...string) []string {
		args := append([]string{"-nostdin", "-v", "error", "-y"}, pre...)
		return append(append(args, inArgs...), "-i", in)
	}
	first := filepath.Join(dir, "first.png")
	if _, err := f.run(ctx, f.bin(f.FFmpeg, "ffmpeg"), append(ffmpegIn(),
		"-frames:v", "1", "-f", "image2", "-c:v", "png", first)...); err != nil {
		if apperr.KindOf(err) != apperr.KindInternal {
			return VideoInfo{}, err
		}
		return VideoInfo{}, apperr.Wrap(apperr.KindInvalid, "The video could not be decoded", err)
	}
	last := filepath.Join(dir, "last.png")
	// Seek near the end and keep overwriting one file: what remains is the
	// last decodable frame.
	seek := strconv.FormatFloat(-math.Min(dur, 3), 'f', 3, 64)
	if _, err := f.run(ctx, f.bin(f.FFmpeg, "ffmpeg"), append(ffmpegIn("-sseof", seek),
		"-update", "1", "-f", "image2", "-c:v", "png", last)...); err != nil {
		if apperr.KindOf(err) != apperr.KindInternal {
			return VideoInfo{}, err
		}
		return VideoInfo{}, apperr.Wrap(apperr.KindInvalid, "The video could not be decoded", err)
	}
	info := VideoInfo{Duration: dur}
	for _, fr := range []struct {
		path string
		dst  *[]byte
	}{{first, &info.First}, {last, &info.Last}} {
		b, err := os.ReadFile(fr.path)
		if err != nil || len(b) == 0 {
			return VideoInfo{}, apperr.Wrap(apperr.KindInvalid, "The video has no decodable frames", err)
		}
		if _, err := Check(b, lim); err != nil {
			return VideoInfo{}, err
		}
		*fr.dst = b
	}
	return info, nil
}

// Duration returns the duration in seconds of the media file at path, read
// as format (a value of SniffVideo, see InputArgs), as ffprobe reports it
// for the container (or else the first video stream). A file without a
// video stream, or longer than MaxVideoDuration, is an Invalid error.
func (f FFmpeg) Duration(ctx context.Context, path, format string) (float64, error) {
	inArgs, ok := InputArgs(format)
	if !ok {
		return 0, apperr.Invalid("The file is not a supported video (MP4, MOV, WebM or AVI)")
	}
	args := append([]string{"-v", "error", "-print_format", "json",
		"-show_entries", "format=duration:stream=codec_type,duration"}, inArgs...)
	out, err := f.run(ctx, f.bin(f.FFprobe, "ffprobe"), append(args, path)...)
	if err != nil {
		if apperr.KindOf(err) != apperr.KindInternal {
			return 0, err
		}
		return 0, apperr.Wrap(apperr.KindInvalid, "The file is not a readable video", err)
	}
	var probe struct {
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
		Streams []struct {
			CodecType string `json:"codec_type"`
			Duration  string `json:"duration"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		return 0, fmt.Errorf("parse ffprobe output: %w", err)
	}
	var video string
	hasVideo := false
	for _, s := range probe.Streams {
		if s.CodecType == "video" {
			hasVideo = true
			video = s.Duration
			break
		}
	}
	if !hasVideo {
		return 0, apperr.Invalid("The file has no video stream")
	}
	for _, s := range []string{probe.Format.Duration, video} {
		if d, err := strconv.ParseFloat(s, 64); err == nil && d > 0 && !math.IsInf(d, 0) && !math.IsNaN(d) {
			if d > MaxVideoDuration.Seconds() {
				return 0, apperr.Invalid(fmt.Sprintf("The video is too long (at most %d hours)", int(MaxVideoDuration.Hours())))
			}
			return d, nil
		}
	}
	return 0, apperr.Invalid("The video has no duration")
}
