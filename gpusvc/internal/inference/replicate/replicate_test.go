package replicate_test

import (
	"context"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/replicate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/replicate/replicatetest"
)

const (
	sdxlVersion     = "9a487e8991d1d9a2ea46a3e4933cafff201f5512b037cc046ff1cce878b143ef"
	musicGenVersion = "1111111111111111111111111111111111111111111111111111111111111111"
	demucsVersion   = "2222222222222222222222222222222222222222222222222222222222222222"
)

func newBackend(tb testing.TB, opts replicatetest.Options) (*replicate.Backend, *replicatetest.Server) {
	tb.Helper()
	srv := replicatetest.NewServer(tb, opts)
	b := replicate.New(replicate.Config{
		BaseURL:       srv.URL(),
		Token:         srv.Token(),
		PollInterval:  5 * time.Millisecond,
		RetryBackoff:  time.Millisecond,
		MusicGenModel: "meta/musicgen:" + musicGenVersion,
		DemucsModel:   "cjwbw/demucs:" + demucsVersion,
	})
	return b, srv
}

func txt2img() inference.ImageRequest {
	return inference.ImageRequest{
		Op: inference.OpTxt2Img, Model: replicate.LegacySDXLModel, Prompt: "a frog wearing noggles",
		NegativePrompt: "blurry", Samples: 2, Steps: 25, Seed: 1437181781, Width: 768, Height: 512,
	}
}

func requireSolid(t *testing.T, img image.Image, w, h int, want color.RGBA) {
	t.Helper()
	require.Equal(t, image.Pt(w, h), img.Bounds().Size())
	r, g, b, a := img.At(w/2, h/2).RGBA()
	require.Equal(t, want, color.RGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(b >> 8), A: uint8(a >> 8)})
}

func TestGenerateTxt2Img(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, replicatetest.Options{})
	require.Equal(t, "replicate", b.Name())

	res, err := b.Generate(t.Context(), txt2img())
	require.NoError(t, err)
	require.Len(t, res.Images, 2)
	requireSolid(t, res.Images[0], 768, 512, replicatetest.SeedColor(1437181781))
	requireSolid(t, res.Images[1], 768, 512, replicatetest.SeedColor(1437181782))

	preds := srv.Predictions()
	require.Len(t, preds, 1)
	require.Equal(t, preds[0].ID, res.Info["prediction_id"])
	require.Equal(t, "succeeded", preds[0].Status)
	require.Equal(t, replicatetest.DefaultPolls, preds[0].Gets, "starting → processing → succeeded")

	creates := srv.RequestsTo(http.MethodPost, "/v1/predictions")
	require.Len(t, creates, 1)
	require.Equal(t, "Bearer "+srv.Token(), creates[0].Header.Get("Authorization"))
	require.Equal(t, "wait", creates[0].Header.Get("Prefer"))
	body := creates[0].JSON(t)
	require.Equal(t, sdxlVersion, body["version"])
	require.Equal(t, map[string]any{
		"prompt": "a frog wearing noggles", "negative_prompt": "blurry", "width": 768.0, "height": 512.0,
		"num_outputs": 2.0, "num_inference_steps": 25.0, "seed": 1437181781.0, "guidance_scale": 7.5,
		"scheduler": "K_EULER", "prompt_strength": 0.8, "refine": "no_refiner", "high_noise_frac": 0.8,
		"lora_scale": 0.8,
	}, body["input"])
}

func TestGenerateImg2Img(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, replicatetest.Options{DataURIOutputs: true})
	init := image.NewRGBA(image.Rect(0, 0, 320, 256))
	draw.Draw(init, init.Bounds(), &image.Uniform{C: color.RGBA{R: 200, A: 255}}, image.Point{}, draw.Src)

	res, err := b.Generate(t.Context(), inference.ImageRequest{
		Op: inference.OpImg2Img, Model: replicate.LegacySDXLModel, Prompt: "p", Samples: 1, Steps: 10,
		Seed: 3, Strength: 0.3, Init: init,
	})
	require.NoError(t, err)
	require.Len(t, res.Images, 1)
	requireSolid(t, res.Images[0], 320, 256, replicatetest.SeedColor(3))

	in := srv.Predictions()[0].Input
	require.InDelta(t, 0.3, in["prompt_strength"], 1e-9)
	require.True(t, strings.HasPrefix(in["image"].(string), "data:image/png;base64,"))
}

func TestPreferWaitAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, replicatetest.Options{HonourWait: true})
	_, err := b.Generate(t.Context(), txt2img())
	require.NoError(t, err)
	require.Empty(t, srv.RequestsTo(http.MethodGet, "/v1/predictions/"+srv.Predictions()[0].ID))
}

func TestVersionResolution(t *testing.T) {
	t.Parallel()
	srv := replicatetest.NewServer(t, replicatetest.Options{Versions: []string{sdxlVersion}})
	b := replicate.New(replicate.Config{BaseURL: srv.URL(), Token: srv.Token(), PollInterval: time.Millisecond,
		Versions: map[string]string{"alx-ai/sdxl-noggles-nowrong": sdxlVersion}})
	req := txt2img()
	req.Model = "alx-ai/sdxl-noggles-nowrong"
	_, err := b.Generate(t.Context(), req)
	require.NoError(t, err)

	req.Model = "someone/unknown"
	_, err = b.Generate(t.Context(), req)
	require.ErrorContains(t, err, "no version known")

	req.Model = "someone/unknown:" + demucsVersion
	_, err = b.Generate(t.Context(), req)
	var ue *inference.UpstreamError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, http.StatusNotFound, ue.Status)
}

func TestAudio(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, replicatetest.Options{})
	melody := replicatetest.MP3(1, "melody")

	res, err := b.Audio(t.Context(), inference.AudioRequest{Op: inference.OpTextToAudio, Prompt: "lofi beat", DurationSec: 8, Seed: 4})
	require.NoError(t, err)
	require.Len(t, res.Tracks, 1)
	require.Equal(t, replicatetest.MP3(8, "musicgen:lofi beat"), res.Tracks[0])

	_, err = b.Audio(t.Context(), inference.AudioRequest{Op: inference.OpAudioMelody, Model: "melody", Prompt: "jazz", DurationSec: 5, Melody: melody})
	require.NoError(t, err)
	_, err = b.Audio(t.Context(), inference.AudioRequest{Op: inference.OpAudioExtend, Prompt: "more", DurationSec: 5, Parent: melody})
	require.NoError(t, err)

	split, err := b.Audio(t.Context(), inference.AudioRequest{Op: inference.OpAudioSplit, Parent: melody})
	require.NoError(t, err)
	require.Equal(t, []string{"drums", "bass", "other", "vocals"}, split.Names)
	require.Len(t, split.Tracks, 4)
	require.Equal(t, replicatetest.MP3(2, "vocals"), split.Tracks[3])

	preds := srv.Predictions()
	require.Len(t, preds, 4)
	require.Equal(t, musicGenVersion, preds[0].Version)
	require.Equal(t, map[string]any{"prompt": "lofi beat", "duration": 8.0, "model_version": replicate.DefaultMusicGenVersion,
		"output_format": "mp3", "seed": 4.0}, preds[0].Input)
	dataURI := "data:audio/mpeg;base64," + base64.StdEncoding.EncodeToString(melody)
	require.Equal(t, "melody", preds[1].Input["model_version"])
	require.Equal(t, dataURI, preds[1].Input["input_audio"])
	require.Equal(t, false, preds[1].Input["continuation"])
	require.Equal(t, true, preds[2].Input["continuation"])
	require.Equal(t, dataURI, preds[2].Input["input_audio"])
	require.Equal(t, demucsVersion, preds[3].Version)
	require.Equal(t, map[string]any{"audio": dataURI}, preds[3].Input)
}

func TestUnsupported(t *testing.T) {
	t.Parallel()
	b := replicate.New(replicate.Config{Token: "x"})
	for _, op := range []inference.Op{inference.OpInpaint, inference.OpPix2Pix, inference.OpControlNetDepth} {
		require.False(t, b.Supports(op))
		_, err := b.Generate(t.Context(), inference.ImageRequest{Op: op})
		require.ErrorIs(t, err, inference.ErrUnsupported)
	}
	_, err := b.Upscale(t.Context(), inference.UpscaleRequest{})
	require.ErrorIs(t, err, inference.ErrUnsupported)
	_, err = b.Segment(t.Context(), inference.SegmentRequest{})
	require.ErrorIs(t, err, inference.ErrUnsupported)
	_, err = b.Audio(t.Context(), inference.AudioRequest{Op: inference.OpInterpolate})
	require.ErrorIs(t, err, inference.ErrUnsupported)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	t.Run("problem details", func(t *testing.T) {
		t.Parallel()
		b, srv := newBackend(t, replicatetest.Options{})
		srv.FailNext(1, http.StatusInternalServerError, "internal error in the model host")
		_, err := b.Generate(t.Context(), txt2img())
		var ue *inference.UpstreamError
		require.ErrorAs(t, err, &ue)
		require.Equal(t, http.StatusInternalServerError, ue.Status)
		require.Equal(t, "internal error in the model host", ue.Message)
		require.Len(t, srv.RequestsTo(http.MethodPost, "/v1/predictions"), 1, "a create is never re-sent on 5xx")
	})
	t.Run("validation", func(t *testing.T) {
		t.Parallel()
		b, _ := newBackend(t, replicatetest.Options{})
		req := txt2img()
		req.Samples = 5
		_, err := b.Generate(t.Context(), req)
		var ue *inference.UpstreamError
		require.ErrorAs(t, err, &ue)
		require.Equal(t, http.StatusUnprocessableEntity, ue.Status)
		require.Contains(t, ue.Message, "num_outputs")
	})
	t.Run("bad token", func(t *testing.T) {
		t.Parallel()
		srv := replicatetest.NewServer(t, replicatetest.Options{})
		b := replicate.New(replicate.Config{BaseURL: srv.URL(), Token: "wrong"})
		_, err := b.Generate(t.Context(), txt2img())
		var ue *inference.UpstreamError
		require.ErrorAs(t, err, &ue)
		require.Equal(t, http.StatusUnauthorized, ue.Status)
	})
	t.Run("prediction failed", func(t *testing.T) {
		t.Parallel()
		b, srv := newBackend(t, replicatetest.Options{})
		srv.FailPredictionsNext(1, "CUDA out of memory")
		_, err := b.Generate(t.Context(), txt2img())
		var ue *inference.UpstreamError
		require.ErrorAs(t, err, &ue)
		require.Equal(t, "CUDA out of memory", ue.Message)
	})
	t.Run("poll 5xx retried", func(t *testing.T) {
		t.Parallel()
		b, srv := newBackend(t, replicatetest.Options{})
		srv.FailNextMethod(http.MethodGet, 2, http.StatusBadGateway, "bad gateway")
		res, err := b.Generate(t.Context(), txt2img())
		require.NoError(t, err)
		require.Len(t, res.Images, 2)
	})
}

func TestRateLimitHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, replicatetest.Options{})
	srv.RateLimitNext(1, time.Second)
	_, err := b.Generate(t.Context(), txt2img())
	require.NoError(t, err)
	creates := srv.RequestsTo(http.MethodPost, "/v1/predictions")
	require.Len(t, creates, 2, "the throttled create is sent again")
	require.GreaterOrEqual(t, creates[1].At.Sub(creates[0].At), 950*time.Millisecond)
	require.Len(t, srv.Predictions(), 1)
}

func TestCancelWhenContextEnds(t *testing.T) {
	t.Parallel()
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		b, srv := newBackend(t, replicatetest.Options{Polls: 1_000_000})
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			for {
				if p := srv.Predictions(); len(p) == 1 && p[0].Gets >= 2 {
					cancel()
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		_, err := b.Generate(ctx, txt2img())
		require.ErrorIs(t, err, context.Canceled)
		id := srv.Predictions()[0].ID
		require.Equal(t, []string{id}, srv.Canceled())
		require.Equal(t, "canceled", srv.Predictions()[0].Status)
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		b, srv := newBackend(t, replicatetest.Options{Polls: 1_000_000})
		// Small outputs so that the create surely returns before the
		// deadline (a deadline during the create cannot cancel: no ID yet).
		req := txt2img()
		req.Samples, req.Width, req.Height = 1, 64, 64
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err := b.Generate(ctx, req)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Len(t, srv.Canceled(), 1)
		require.Positive(t, srv.Predictions()[0].Gets)
		require.NotEmpty(t, srv.RequestsTo(http.MethodPost, "/v1/predictions")[0].Header.Get("Cancel-After"))
	})
	t.Run("deadline during a slow create", func(t *testing.T) {
		t.Parallel()
		b, srv := newBackend(t, replicatetest.Options{})
		srv.SetDelay(5 * time.Second)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := b.Generate(ctx, txt2img())
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(start), 2*time.Second)
	})
}

// countingClient returns a client whose dials are counted.
func countingClient(dials *atomic.Int32) *http.Client {
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}}}
}

func TestRetriesDialErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	var dials atomic.Int32
	b := replicate.New(replicate.Config{BaseURL: "http://" + addr + "/v1", Token: "x",
		HTTPClient: countingClient(&dials), MaxRetries: 2, RetryBackoff: time.Millisecond})
	_, err = b.Generate(t.Context(), txt2img())
	var ue *inference.UpstreamError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, "server unreachable", ue.Message)
	require.Equal(t, int32(3), dials.Load())
	require.False(t, errors.Is(err, context.Canceled))
}
