package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	xdraw "golang.org/x/image/draw"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/storage"
)

// Video frame limits.
const (
	// maxVideoSide bounds the frame size; larger keyframes are scaled down.
	maxVideoSide = 1024
	// maxInterpolate is the most in-between frames asked of the backend in
	// one call; longer segments repeat frames evenly.
	maxInterpolate = 120
)

type videoWorker struct {
	river.WorkerDefaults[jobs.VideoArgs]
	r *Runner
}

// Timeout is the job's own timeout, derived from its frame count.
func (w *videoWorker) Timeout(job *river.Job[jobs.VideoArgs]) time.Duration {
	return job.Args.Timeout()
}

// Work renders one video project.
func (w *videoWorker) Work(ctx context.Context, job *river.Job[jobs.VideoArgs]) error {
	return w.r.execute(ctx, job.JobRow, job.Args.Args, w.r.workVideo)
}

// workVideo renders a project (legacy §8): keyframes from its images,
// in-between frames from the backend, ffmpeg into an H.264 MP4 with the
// project's audio from the first timestamp, uploaded to the project's
// fixed key before the state becomes COMPLETED (legacy C19).
func (r *Runner) workVideo(ctx context.Context, x *run) (jobs.Outcome, func(context.Context, pgx.Tx, jobs.Job) error, error) {
	project, err := library.LoadProject(ctx, r.opts.Pool, x.job.VideoProjectID)
	if errors.Is(err, library.ErrProjectNotFound) {
		return jobs.Outcome{}, nil, permanentf("video project %d not found", x.job.VideoProjectID)
	}
	if err != nil {
		return jobs.Outcome{}, nil, err
	}
	userID, audioID, raw, cdnID := project.UserID, project.AudioID, project.Metadata, project.CDNID
	if cdnID == nil || !storage.ValidKey(*cdnID) {
		return jobs.Outcome{}, nil, permanentf("the video project has no cdn_id")
	}
	plan, err := jobs.PlanVideo(raw, r.cfg.Jobs.VideoFPS, r.cfg.Jobs.VideoMaxDuration)
	if err != nil {
		return jobs.Outcome{}, nil, err
	}
	if !r.opts.Backend.Supports(inference.OpInterpolate) {
		return jobs.Outcome{}, nil, inference.Unsupported(r.opts.Backend.Name(), inference.OpInterpolate)
	}
	_, audio, err := r.ownedAudio(ctx, userID, audioID, "the project's")
	if err != nil {
		return jobs.Outcome{}, nil, err
	}
	keyframes := make([]image.Image, len(plan.ImageIDs))
	for i, id := range plan.ImageIDs {
		if keyframes[i], err = r.keyframe(ctx, userID, id); err != nil {
			return jobs.Outcome{}, nil, err
		}
	}
	size := frameSize(keyframes[0].Bounds())
	if size.Dx() < 32 || size.Dy() < 32 {
		return jobs.Outcome{}, nil, permanentf("the first image is smaller than 32×32")
	}
	dir, err := os.MkdirTemp(r.opts.FFmpeg.TempDir, "video-*")
	if err != nil {
		return jobs.Outcome{}, nil, fmt.Errorf("create video scratch dir: %w", err)
	}
	defer os.RemoveAll(dir) // legacy C19: the output was never cleaned
	audioPath := filepath.Join(dir, "audio.mp3")
	if err := os.WriteFile(audioPath, audio, 0o600); err != nil {
		return jobs.Outcome{}, nil, fmt.Errorf("write audio: %w", err)
	}
	// Bad user input fails at once (and before the charge): retrying an
	// undecodable upload cannot help. ffmpeg reads the audio as the format
	// its content was sniffed as, from that file only (issue 13.6).
	audioIn, err := audioInputArgs(audio)
	if err != nil {
		return jobs.Outcome{}, nil, err
	}
	if err := r.checkAudio(ctx, audioPath, audioIn); err != nil {
		return jobs.Outcome{}, nil, err
	}
	if err := x.charge(ctx, credits.OpVideo, plan.Seconds()); err != nil {
		return jobs.Outcome{}, nil, err
	}
	if err := x.progress(ctx, 0.02, "frames"); err != nil {
		return jobs.Outcome{}, nil, err
	}
	for i := range keyframes {
		keyframes[i] = fit(keyframes[i], size)
	}

	total := plan.TotalFrames()
	done := 0
	write := func(img image.Image) error {
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			return fmt.Errorf("encode frame %d: %w", done, err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("frame%05d.png", done)), buf.Bytes(), 0o600); err != nil {
			return fmt.Errorf("write frame %d: %w", done, err)
		}
		done++
		return x.progress(ctx, 0.02+0.83*float64(done)/float64(total), "frames")
	}
	for seg, n := range plan.Frames {
		if err := write(keyframes[seg]); err != nil {
			return jobs.Outcome{}, nil, err
		}
		between := n - 1
		var got []image.Image
		err := x.onGPU(ctx, 1, func() (err error) {
			got, err = r.opts.Backend.Interpolate(ctx, inference.InterpolateRequest{
				From: keyframes[seg], To: keyframes[seg+1], N: min(between, maxInterpolate),
				Prompt: plan.Prompts[seg], Seed: x.job.VideoProjectID*1000 + int64(seg)})
			return err
		})
		if err != nil {
			return jobs.Outcome{}, nil, err
		}
		if len(got) == 0 {
			return jobs.Outcome{}, nil, errors.New("the backend returned no frames")
		}
		for k := 1; k <= between; k++ {
			// Spread the frames the backend gave over the segment.
			idx := min(len(got)-1, (k*(len(got)+1))/(between+1)-1)
			if err := write(fit(got[max(idx, 0)], size)); err != nil {
				return jobs.Outcome{}, nil, err
			}
		}
	}
	if err := write(keyframes[len(keyframes)-1]); err != nil {
		return jobs.Outcome{}, nil, err
	}

	if err := x.progress(ctx, 0.88, "encoding"); err != nil {
		return jobs.Outcome{}, nil, err
	}
	out := filepath.Join(dir, "out.mp4")
	if err := r.encode(ctx, dir, audioPath, audioIn, out, plan); err != nil {
		return jobs.Outcome{}, nil, err
	}
	mp4, err := os.ReadFile(out)
	if err != nil {
		return jobs.Outcome{}, nil, fmt.Errorf("read encoded video: %w", err)
	}
	if err := x.progress(ctx, 0.95, "uploading"); err != nil {
		return jobs.Outcome{}, nil, err
	}
	key := storage.VideoKey(userID, *cdnID)
	if err := r.opts.Storage.Put(ctx, storage.KindVideo, key, mp4); err != nil {
		return jobs.Outcome{}, nil, err
	}
	return jobs.Outcome{State: jobs.StateCompleted, Result: jobs.Result{VideoProjectID: x.job.VideoProjectID,
		URL: r.opts.Storage.URL(storage.KindVideo, key)}}, nil, nil
}

// keyframe loads the user's image id (owner checked, legacy S6).
func (r *Runner) keyframe(ctx context.Context, userID, id int64) (image.Image, error) {
	cdnID, err := library.ImageCDNID(ctx, r.opts.Pool, userID, id)
	if errors.Is(err, library.ErrImageNotFound) || (err == nil && cdnID == "") {
		return nil, permanentf("image %d not found", id)
	}
	if err != nil {
		return nil, err
	}
	data, err := r.opts.Storage.Get(ctx, storage.KindImage, storage.ImageKey(userID, cdnID))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, permanentf("image %d has no stored file", id)
	}
	if err != nil {
		return nil, fmt.Errorf("download image %d: %w", id, err)
	}
	img, _, err := media.Decode(data, media.DefaultLimits)
	if err != nil {
		return nil, permanentf("image %d could not be decoded", id)
	}
	return img, nil
}

// frameSize is the first keyframe's size scaled to at most maxVideoSide
// and rounded down to a multiple of 32 (legacy; also keeps H.264's 4:2:0
// happy).
func frameSize(b image.Rectangle) image.Rectangle {
	w, h := b.Dx(), b.Dy()
	if s := max(w, h); s > maxVideoSide {
		w, h = w*maxVideoSide/s, h*maxVideoSide/s
	}
	return image.Rect(0, 0, w/32*32, h/32*32)
}

// fit scales img to exactly size (RGBA).
func fit(img image.Image, size image.Rectangle) image.Image {
	if img.Bounds() == size {
		if _, ok := img.(*image.RGBA); ok {
			return img
		}
	}
	out := image.NewRGBA(size)
	xdraw.ApproxBiLinear.Scale(out, size, img, img.Bounds(), xdraw.Src, nil)
	return out
}

// ffmpegBin returns the ffmpeg binary to run, or an error naming the
// Debian package when it is missing.
func (r *Runner) ffmpegBin() (string, error) {
	bin := r.opts.FFmpeg.FFmpeg
	if bin == "" {
		bin = "ffmpeg"
	}
	if _, err := exec.LookPath(bin); err != nil {
		return "", fmt.Errorf("ffmpeg is not installed (Debian package ffmpeg): %w", err)
	}
	return bin, nil
}

// audioInputArgs sniffs the project's audio and returns the options that
// make ffmpeg read it as that format and open nothing else
// (media.InputArgs); audio that is not a known format fails permanently.
func audioInputArgs(audio []byte) ([]string, error) {
	format, err := media.SniffAudio(audio)
	if err != nil {
		return nil, permanentf("the project's audio could not be decoded")
	}
	args, ok := media.InputArgs(format)
	if !ok {
		return nil, permanentf("the project's audio could not be decoded")
	}
	return args, nil
}

// checkAudio decodes the whole audio file (read with the input options in)
// and fails permanently when ffmpeg cannot (a file that only looks like
// MP3).
func (r *Runner) checkAudio(ctx context.Context, path string, in []string) error {
	bin, err := r.ffmpegBin()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	args := append([]string{"-nostdin", "-v", "error", "-xerror"}, in...)
	args = append(args, "-i", path, "-f", "null", "-")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return permanentf("the project's audio could not be decoded")
	}
	return nil
}

// encode runs ffmpeg: the frames at the plan's fps as H.264 (yuv420p) with
// the audio from the first timestamp, for the duration the timestamps
// imply.
func (r *Runner) encode(ctx context.Context, dir, audioPath string, audioIn []string, out string, plan jobs.VideoPlan) error {
	bin, err := r.ffmpegBin()
	if err != nil {
		return err
	}
	dur := strconv.FormatFloat(plan.Duration(), 'f', 3, 64)
	args := []string{"-nostdin", "-v", "error", "-y",
		"-protocol_whitelist", media.ProtocolWhitelist, "-f", "image2",
		"-framerate", strconv.Itoa(plan.FPS), "-i", filepath.Join(dir, "frame%05d.png"),
		"-ss", strconv.FormatFloat(plan.Start(), 'f', 3, 64), "-t", dur}
	args = append(args, audioIn...)
	args = append(args, "-i", audioPath,
		"-map", "0:v:0", "-map", "1:a:0", "-t", dur,
		"-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart", out)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := stderr.Bytes()
		if len(msg) > 512 {
			msg = msg[len(msg)-512:]
		}
		return fmt.Errorf("ffmpeg: %w: %s", err, bytes.TrimSpace(msg))
	}
	return nil
}
