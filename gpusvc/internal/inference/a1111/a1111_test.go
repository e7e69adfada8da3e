package a1111_test

import (
	"context"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/a1111"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/a1111/a1111test"
)

var cnModels = map[inference.Op]string{
	inference.OpControlNetOutlines: "control_v11p_sd15_canny [d14c016b]",
	inference.OpControlNetDepth:    "control_v11f1p_sd15_depth [cfd03158]",
	inference.OpControlNetSegment:  "control_v11p_sd15_seg [e1f51eb9]",
}

// newBackend starts a fake and a Backend pointed at it.
func newBackend(tb testing.TB, opts a1111test.Options) (*a1111.Backend, *a1111test.Server) {
	tb.Helper()
	srv := a1111test.NewServer(tb, opts)
	b := a1111.New(a1111.Config{BaseURL: srv.URL(), ControlNetModels: cnModels, RetryBackoff: time.Millisecond})
	return b, srv
}

func solidImage(w, h int, c color.Color) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{C: c}, image.Point{}, draw.Src)
	return img
}

func requireSolid(t *testing.T, img image.Image, w, h int, want color.RGBA) {
	t.Helper()
	require.Equal(t, image.Pt(w, h), img.Bounds().Size())
	r, g, b, a := img.At(w/2, h/2).RGBA()
	require.Equal(t, want, color.RGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(b >> 8), A: uint8(a >> 8)})
}

func TestGenerateTxt2Img(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, a1111test.Options{})
	require.Equal(t, "a1111", b.Name())

	res, err := b.Generate(t.Context(), inference.ImageRequest{
		Op: inference.OpTxt2Img, Model: a1111test.DefaultModels[0], Prompt: "a frog", NegativePrompt: "blurry",
		Samples: 2, Steps: 20, Seed: 42, Width: 512, Height: 768,
	})
	require.NoError(t, err)
	require.Len(t, res.Images, 2)
	requireSolid(t, res.Images[0], 512, 768, a1111test.SeedColor(42))
	requireSolid(t, res.Images[1], 512, 768, a1111test.SeedColor(43))
	require.Equal(t, int64(42), res.Info["seed"])
	require.Equal(t, []int64{42, 43}, res.Info["all_seeds"])

	reqs := srv.RequestsTo("/sdapi/v1/txt2img")
	require.Len(t, reqs, 1)
	body := reqs[0].JSON(t)
	require.Equal(t, "a frog", body["prompt"])
	require.Equal(t, "blurry", body["negative_prompt"])
	require.InDelta(t, 2, body["batch_size"], 0)
	require.InDelta(t, 20, body["steps"], 0)
	require.InDelta(t, 7.5, body["cfg_scale"], 0)
	require.Equal(t, map[string]any{"sd_model_checkpoint": a1111test.DefaultModels[0]}, body["override_settings"])
	require.Equal(t, false, body["override_settings_restore_afterwards"])
	require.Equal(t, true, body["send_images"])
}

func TestGenerateJPEGResponse(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, a1111test.Options{JPEG: true})
	res, err := b.Generate(t.Context(), inference.ImageRequest{
		Op: inference.OpTxt2Img, Prompt: "x", Samples: 1, Steps: 1, Seed: 7, Width: 64, Height: 128,
	})
	require.NoError(t, err)
	require.Len(t, res.Images, 1)
	require.Equal(t, image.Pt(64, 128), res.Images[0].Bounds().Size())
}

func TestGenerateImg2ImgAndPix2Pix(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, a1111test.Options{})
	init := solidImage(320, 256, color.RGBA{R: 10, G: 20, B: 30, A: 255})

	res, err := b.Generate(t.Context(), inference.ImageRequest{
		Op: inference.OpImg2Img, Prompt: "p", Samples: 1, Steps: 10, Seed: 5, Strength: 0.4, Init: init,
	})
	require.NoError(t, err)
	requireSolid(t, res.Images[0], 320, 256, a1111test.SeedColor(5))

	res, err = b.Generate(t.Context(), inference.ImageRequest{
		Op: inference.OpPix2Pix, Model: a1111test.DefaultModels[1], Prompt: "make it snow", Samples: 1,
		Steps: 10, Seed: 6, Init: init,
	})
	require.NoError(t, err)
	require.Len(t, res.Images, 1)

	reqs := srv.RequestsTo("/sdapi/v1/img2img")
	require.Len(t, reqs, 2)
	body := reqs[0].JSON(t)
	require.InDelta(t, 0.4, body["denoising_strength"], 1e-9)
	require.InDelta(t, 320, body["width"], 0)
	require.Len(t, body["init_images"], 1)
	sent, err := a1111test.DecodeImage(body["init_images"].([]any)[0].(string))
	require.NoError(t, err)
	require.Equal(t, image.Pt(320, 256), sent.Bounds().Size())
	require.NotContains(t, body, "image_cfg_scale")

	body = reqs[1].JSON(t)
	require.InDelta(t, a1111.DefaultImageCFGScale, body["image_cfg_scale"], 1e-9)
	require.InDelta(t, 1.0, body["denoising_strength"], 1e-9)
}

func TestGenerateInpaintSendsBinaryMask(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, a1111test.Options{})
	init := solidImage(128, 128, color.White)
	// Transparent mask with an opaque (red) square: alpha decides.
	mask := image.NewRGBA(image.Rect(0, 0, 128, 128))
	draw.Draw(mask, image.Rect(0, 0, 64, 64), &image.Uniform{C: color.RGBA{R: 255, A: 255}}, image.Point{}, draw.Src)

	_, err := b.Generate(t.Context(), inference.ImageRequest{
		Op: inference.OpInpaint, Prompt: "p", Samples: 1, Steps: 10, Seed: 1, Strength: 0.75, Init: init, Mask: mask,
	})
	require.NoError(t, err)
	body := srv.RequestsTo("/sdapi/v1/img2img")[0].JSON(t)
	sent, err := a1111test.DecodeImage(body["mask"].(string))
	require.NoError(t, err)
	require.Equal(t, color.Gray{Y: 255}, color.GrayModel.Convert(sent.At(10, 10)))
	require.Equal(t, color.Gray{Y: 0}, color.GrayModel.Convert(sent.At(100, 100)))

	_, err = b.Generate(t.Context(), inference.ImageRequest{
		Op: inference.OpInpaint, Prompt: "p", Samples: 1, Steps: 10, Init: init,
	})
	require.Error(t, err)
}

func TestGenerateControlNet(t *testing.T) {
	t.Parallel()
	for op, module := range map[inference.Op]string{
		inference.OpControlNetOutlines: "canny",
		inference.OpControlNetDepth:    "depth_midas",
		inference.OpControlNetSegment:  "seg_ofade20k",
	} {
		t.Run(string(op), func(t *testing.T) {
			t.Parallel()
			b, srv := newBackend(t, a1111test.Options{})
			require.True(t, b.Supports(op))
			// The fake appends a detect map after the generated images; the
			// backend must return only Samples images.
			res, err := b.Generate(t.Context(), inference.ImageRequest{
				Op: op, Prompt: "p", Samples: 1, Steps: 10, Seed: 9, Init: solidImage(256, 192, color.Black),
			})
			require.NoError(t, err)
			require.Len(t, res.Images, 1)
			requireSolid(t, res.Images[0], 256, 192, a1111test.SeedColor(9))

			body := srv.RequestsTo("/sdapi/v1/txt2img")[0].JSON(t)
			unit := body["alwayson_scripts"].(map[string]any)["controlnet"].(map[string]any)["args"].([]any)[0].(map[string]any)
			require.Equal(t, module, unit["module"])
			require.Equal(t, cnModels[op], unit["model"])
			require.Equal(t, true, unit["enabled"])
			require.InDelta(t, 1.0, unit["weight"], 0)
		})
	}
}

func TestUpscaleInterrogateSegment(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, a1111test.Options{})
	img := solidImage(100, 60, color.RGBA{R: 1, G: 2, B: 3, A: 255})

	up, err := b.Upscale(t.Context(), inference.UpscaleRequest{Image: img, Scale: 4})
	require.NoError(t, err)
	require.Equal(t, image.Pt(400, 240), up.Bounds().Size())
	body := srv.RequestsTo("/sdapi/v1/extra-single-image")[0].JSON(t)
	require.Equal(t, a1111.DefaultUpscaler, body["upscaler_1"])
	require.InDelta(t, 0, body["resize_mode"], 0)
	require.InDelta(t, 4, body["upscaling_resize"], 0)

	caption, err := b.Interrogate(t.Context(), "", img)
	require.NoError(t, err)
	require.Equal(t, a1111test.DefaultCaption, caption)
	require.Equal(t, "clip", srv.RequestsTo("/sdapi/v1/interrogate")[0].JSON(t)["model"])

	mask, err := b.Segment(t.Context(), inference.SegmentRequest{Image: img, Points: []image.Point{{X: 10, Y: 10}}})
	require.NoError(t, err)
	require.Len(t, mask, 100*60)
	require.True(t, mask[10*100+10])
	require.False(t, mask[59*100+99])
	sam := srv.RequestsTo("/sam/sam-predict")[0].JSON(t)
	require.Equal(t, []any{[]any{10.0, 10.0}}, sam["sam_positive_points"])
}

func TestUnsupported(t *testing.T) {
	t.Parallel()
	b := a1111.New(a1111.Config{BaseURL: "http://127.0.0.1:1"})
	require.False(t, b.Supports(inference.OpControlNetDepth), "no ControlNet model configured")
	_, err := b.Generate(t.Context(), inference.ImageRequest{Op: inference.OpControlNetDepth})
	require.ErrorIs(t, err, inference.ErrUnsupported)
	_, err = b.ExtendPrompt(t.Context(), "x")
	require.ErrorIs(t, err, inference.ErrUnsupported)
	_, err = b.Audio(t.Context(), inference.AudioRequest{Op: inference.OpAudioSplit})
	require.ErrorIs(t, err, inference.ErrUnsupported)
	_, err = b.Interpolate(t.Context(), inference.InterpolateRequest{})
	require.ErrorIs(t, err, inference.ErrUnsupported)
}

func TestServerErrorIsUpstreamError(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, a1111test.Options{})
	req := inference.ImageRequest{Op: inference.OpTxt2Img, Prompt: "p", Samples: 1, Steps: 5, Width: 64, Height: 64}

	srv.FailNext(1, http.StatusInternalServerError, "CUDA out of memory")
	_, err := b.Generate(t.Context(), req)
	var ue *inference.UpstreamError
	require.ErrorAs(t, err, &ue)
	require.Equal(t, http.StatusInternalServerError, ue.Status)
	require.Equal(t, "CUDA out of memory", ue.Message)
	require.Equal(t, "a1111", ue.Backend)
	require.Len(t, srv.Requests(), 1, "a 500 is never retried")

	// The fake's own validation answers 422 with the server's message.
	req.Model = "missing.safetensors"
	_, err = b.Generate(t.Context(), req)
	require.ErrorAs(t, err, &ue)
	require.Equal(t, http.StatusUnprocessableEntity, ue.Status)
	require.Contains(t, ue.Message, "missing.safetensors")
}

func TestDroppedConnectionIsNotRetried(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, a1111test.Options{})
	srv.DropNext(1)
	_, err := b.Generate(t.Context(), inference.ImageRequest{Op: inference.OpTxt2Img, Prompt: "p", Samples: 1, Steps: 5, Width: 64, Height: 64})
	var ue *inference.UpstreamError
	require.ErrorAs(t, err, &ue)
	require.Len(t, srv.Requests(), 1)
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, a1111test.Options{})
	srv.SetDelay(5 * time.Second)
	req := inference.ImageRequest{Op: inference.OpTxt2Img, Prompt: "p", Samples: 1, Steps: 5, Width: 64, Height: 64}

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Generate(ctx, req)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 2*time.Second)
	// The abandoned job is interrupted before the next caller's turn.
	require.Len(t, srv.RequestsTo("/sdapi/v1/interrupt"), 1)

	// Config.Timeout bounds the exchange on its own.
	short := a1111.New(a1111.Config{BaseURL: srv.URL(), Timeout: 100 * time.Millisecond})
	_, err = short.Generate(t.Context(), req)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// countingClient returns a client whose dials are counted and whose first
// failDials dials fail like a refused connection.
func countingClient(dials *atomic.Int32, failDials int32) *http.Client {
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) <= failDials {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
		}
		return d.DialContext(ctx, network, addr)
	}}
	return &http.Client{Transport: tr}
}

func TestRetriesOnlyDialErrors(t *testing.T) {
	t.Parallel()
	req := inference.ImageRequest{Op: inference.OpTxt2Img, Prompt: "p", Samples: 1, Steps: 5, Width: 64, Height: 64}

	t.Run("closed port", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		var dials atomic.Int32
		b := a1111.New(a1111.Config{BaseURL: "http://" + addr, HTTPClient: countingClient(&dials, 0),
			DialRetries: 2, RetryBackoff: time.Millisecond})
		_, err = b.Generate(t.Context(), req)
		var ue *inference.UpstreamError
		require.ErrorAs(t, err, &ue)
		require.Equal(t, "server unreachable", ue.Message)
		require.Equal(t, int32(3), dials.Load(), "one try and two retries")
	})

	t.Run("recovers after a refused dial", func(t *testing.T) {
		t.Parallel()
		srv := a1111test.NewServer(t, a1111test.Options{})
		var dials atomic.Int32
		b := a1111.New(a1111.Config{BaseURL: srv.URL(), HTTPClient: countingClient(&dials, 1), RetryBackoff: time.Millisecond})
		res, err := b.Generate(t.Context(), req)
		require.NoError(t, err)
		require.Len(t, res.Images, 1)
		require.Equal(t, int32(2), dials.Load())
		require.Len(t, srv.Requests(), 1)
	})

	t.Run("500 not retried", func(t *testing.T) {
		t.Parallel()
		srv := a1111test.NewServer(t, a1111test.Options{})
		srv.FailNext(5, http.StatusInternalServerError, "boom")
		b := a1111.New(a1111.Config{BaseURL: srv.URL(), RetryBackoff: time.Millisecond})
		_, err := b.Generate(t.Context(), req)
		require.Error(t, err)
		require.Len(t, srv.Requests(), 1)
	})
}

func TestOneRequestAtATime(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, a1111test.Options{})
	srv.SetDelay(30 * time.Millisecond)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range 4 {
		wg.Go(func() {
			_, errs[i] = b.Generate(t.Context(), inference.ImageRequest{
				Op: inference.OpTxt2Img, Prompt: "p", Samples: 1, Steps: 5, Seed: int64(i), Width: 64, Height: 64,
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, srv.Requests(), 4)
	require.Equal(t, 1, srv.MaxInFlight())
}

func TestWaitForTurnHonoursContext(t *testing.T) {
	t.Parallel()
	b, srv := newBackend(t, a1111test.Options{})
	srv.SetDelay(time.Second)
	req := inference.ImageRequest{Op: inference.OpTxt2Img, Prompt: "p", Samples: 1, Steps: 5, Width: 64, Height: 64}
	done := make(chan error, 1)
	go func() {
		_, err := b.Generate(t.Context(), req)
		done <- err
	}()
	require.Eventually(t, func() bool { return srv.InFlight() == 1 }, time.Second, 5*time.Millisecond)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := b.Generate(ctx, req)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Len(t, srv.Requests(), 1, "the waiting request never reached the server")
	require.NoError(t, <-done)
}
