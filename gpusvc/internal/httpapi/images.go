package httpapi

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/web"
)

// Legacy defaults of inference() for fields a request leaves out.
const (
	defaultSteps       = 25
	defaultSeed        = 1437181781
	defaultAspectRatio = "768:768"
	defaultSamples     = 1
)

// readImageJob reads the request body as a legacy POST /images body.
func (h *handlers) readImageJob(c echo.Context) (generate.ImageJob, error) {
	b, err := readBody(c)
	if err != nil {
		return generate.ImageJob{}, err
	}
	return parseImageJob(b, h.gen.Limits())
}

// parseImageJob reads the legacy POST /images body (docs/legacy-contract.md §11).
func parseImageJob(b body, lim generate.Limits) (generate.ImageJob, error) {
	var j generate.ImageJob
	mode, err := b.str("inference_mode", true)
	if err != nil {
		return j, err
	}
	if j.Op, j.Mode, err = generate.ModeOp(mode); err != nil {
		return j, err
	}
	if j.ModelID, err = b.str("model_id", false); err != nil {
		return j, err
	}
	if j.Prompt, err = b.str("prompt", true); err != nil {
		return j, err
	}
	if j.NegativePrompt, err = b.str("negative_prompt", false); err != nil {
		return j, err
	}
	if j.Samples, err = b.smallInt("samples", defaultSamples); err != nil {
		return j, err
	}
	if j.Steps, err = b.smallInt("steps", defaultSteps); err != nil {
		return j, err
	}
	if j.Seed, err = b.integer("seed", defaultSeed); err != nil {
		return j, err
	}
	if j.Strength, j.HasStrength, err = b.number("strength"); err != nil {
		return j, err
	}
	if b.has("parent_id") {
		p, err := b.integer("parent_id", generate.NoParent)
		if err != nil {
			return j, err
		}
		j.ParentID = &p
	}
	if j.Op == inference.OpTxt2Img {
		if j.AspectRatio, err = b.str("aspect_ratio", false); err != nil {
			return j, err
		}
		if j.AspectRatio == "" {
			j.AspectRatio = defaultAspectRatio
		}
		if j.Width, j.Height, err = parseAspectRatio(j.AspectRatio); err != nil {
			return j, err
		}
		return j, nil
	}
	if j.Input, err = b.image("base_64", true, lim.MaxInputBytes); err != nil {
		return j, err
	}
	if j.Op == inference.OpInpaint {
		// The mask is a packed bit array, not an image: a 4096×4096 mask is
		// 2 MiB.
		s, err := b.str("mask", true)
		if err != nil {
			return j, err
		}
		if j.Mask, err = decodeBase64("mask", s, lim.MaxInputSide*lim.MaxInputSide/8+1); err != nil {
			return j, err
		}
	}
	return j, nil
}

// parseAspectRatio parses the legacy "W:H" (pixels, width first).
func parseAspectRatio(s string) (int, int, error) {
	w, h, ok := strings.Cut(strings.TrimSpace(s), ":")
	wi, err1 := strconv.Atoi(strings.TrimSpace(w))
	hi, err2 := strconv.Atoi(strings.TrimSpace(h))
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fieldError("aspect_ratio", `aspect_ratio must be "<width>:<height>" in pixels, e.g. "768:768"`)
	}
	return wi, hi, nil
}

// handleImageCreate is POST /images: generate, store every sample, answer
// with the first one's bytes and X-Image-Id / X-Image-Ids.
func (h *handlers) handleImageCreate(c echo.Context) error {
	ctx := c.Request().Context()
	claims, ok := auth.FromContext(ctx)
	if !ok {
		return apperr.Unauthorized(auth.MsgTokenMissing)
	}
	job, err := h.readImageJob(c)
	if err != nil {
		return err
	}
	job.UserID, job.Anonymous, job.Key = claims.UserID, claims.Anonymous, web.RequestID(ctx)
	res, err := h.gen.GenerateImages(ctx, job)
	if err != nil {
		return err
	}
	ids := make([]string, len(res.Outputs))
	for i, o := range res.Outputs {
		ids[i] = strconv.FormatInt(o.ID, 10)
	}
	hd := c.Response().Header()
	hd.Set("X-Image-Id", ids[0])
	hd.Set("X-Image-Ids", strings.Join(ids, ","))
	// No Access-Control-Expose-Headers: browsers reach gpusvc only through
	// the proxy, whose edge policy (edgepolicy.ExposedHeaders) exposes
	// these and strips whatever CORS headers an upstream adds.
	first := res.Outputs[0]
	return writeImage(c, first.Image, first.PNG)
}

// writeImage answers with an image: pngBytes (or a fresh PNG encode when
// nil) unless the request's Accept prefers image/jpeg.
func writeImage(c echo.Context, img image.Image, pngBytes []byte) error {
	if prefersJPEG(c.Request().Header.Get("Accept")) {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
			return fmt.Errorf("encode jpeg response: %w", err)
		}
		return c.Blob(http.StatusOK, "image/jpeg", buf.Bytes())
	}
	if pngBytes == nil {
		var err error
		if pngBytes, err = encodePNG(img); err != nil {
			return err
		}
	}
	return c.Blob(http.StatusOK, "image/png", pngBytes)
}

// prefersJPEG reports whether an Accept header ranks image/jpeg strictly
// above image/png (by q, the most specific matching range deciding).
func prefersJPEG(accept string) bool {
	if accept == "" {
		return false
	}
	return acceptQ(accept, "image", "jpeg") > acceptQ(accept, "image", "png")
}

// acceptQ returns the q value Accept gives type/sub: from the most specific
// matching range (type/sub over type/* over */*), 0 when none matches.
func acceptQ(accept, typ, sub string) float64 {
	best, q := -1, 0.0
	for _, part := range strings.Split(accept, ",") {
		fields := strings.Split(part, ";")
		mt := strings.ToLower(strings.TrimSpace(fields[0]))
		t, s, _ := strings.Cut(mt, "/")
		spec := -1
		switch {
		case t == typ && s == sub:
			spec = 2
		case t == typ && s == "*":
			spec = 1
		case t == "*" && s == "*":
			spec = 0
		}
		if spec < 0 || spec < best {
			continue
		}
		v := 1.0
		for _, p := range fields[1:] {
			k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil && f >= 0 && f <= 1 {
					v = f
				}
			}
		}
		if spec > best || v > q {
			best, q = spec, v
		}
	}
	return q
}
