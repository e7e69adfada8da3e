package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/web"
)

// jwtCaller is the paying caller of a JWT route.
func jwtCaller(c echo.Context) generate.Caller {
	ctx := c.Request().Context()
	claims, _ := auth.FromContext(ctx)
	return generate.Caller{UserID: claims.UserID, Anonymous: claims.Anonymous, Charged: true, Key: web.RequestID(ctx)}
}

// handleExtendPrompt is POST /extend_prompt (challenge token only, so free
// and rate-limited per IP): {"prompt"} → {"prompt"}.
func (h *handlers) handleExtendPrompt(c echo.Context) error {
	b, err := readBody(c)
	if err != nil {
		return err
	}
	prompt, err := b.str("prompt", true)
	if err != nil {
		return err
	}
	model, err := b.str("model_id", false)
	if err != nil {
		return err
	}
	out, err := h.gen.ExtendPrompt(c.Request().Context(), generate.Caller{}, model, prompt)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"prompt": out})
}

// readImageBody reads {"base_64", "model_id"?}, the body of the routes
// that take one input image.
func (h *handlers) readImageBody(c echo.Context) (data []byte, model string, err error) {
	b, err := readBody(c)
	if err != nil {
		return nil, "", err
	}
	if data, err = b.image("base_64", true, h.gen.Limits().MaxInputBytes); err != nil {
		return nil, "", err
	}
	if model, err = b.str("model_id", false); err != nil {
		return nil, "", err
	}
	return data, model, nil
}

// handleInterrogate is POST /interrogate (JWT, charged): {"base_64"} →
// {"prompt"}.
func (h *handlers) handleInterrogate(c echo.Context) error {
	data, model, err := h.readImageBody(c)
	if err != nil {
		return err
	}
	out, err := h.gen.Interrogate(c.Request().Context(), jwtCaller(c), model, data)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"prompt": out})
}

// handleUpscale is POST /upscale (JWT, charged): {"base_64"} → the image
// body (PNG, or JPEG when Accept prefers it). Nothing is stored.
func (h *handlers) handleUpscale(c echo.Context) error {
	data, model, err := h.readImageBody(c)
	if err != nil {
		return err
	}
	img, err := h.gen.Upscale(c.Request().Context(), jwtCaller(c), model, data)
	if err != nil {
		return err
	}
	return writeImage(c, img, nil)
}

// handleMask is POST /mask (challenge token only, free, rate-limited per
// IP): {"base64", "coordinates": [[x, y], ...]} → {"mask": base64 of the
// H×W mask, row-major, bit-packed MSB-first}.
func (h *handlers) handleMask(c echo.Context) error {
	b, err := readBody(c)
	if err != nil {
		return err
	}
	data, err := b.image("base64", true, h.gen.Limits().MaxInputBytes)
	if err != nil {
		return err
	}
	if !b.has("coordinates") {
		return fieldError("coordinates", "coordinates is required")
	}
	var coords [][]json.Number
	if err := json.Unmarshal(b["coordinates"], &coords); err != nil {
		return fieldError("coordinates", "coordinates must be a list of [x, y] pairs")
	}
	if len(coords) > h.gen.Limits().MaxPoints {
		return fieldError("coordinates", fmt.Sprintf("coordinates must hold 1 to %d points", h.gen.Limits().MaxPoints))
	}
	points := make([]image.Point, len(coords))
	for i, xy := range coords {
		if len(xy) != 2 {
			return fieldError("coordinates", "coordinates must be a list of [x, y] pairs")
		}
		x, errX := xy[0].Float64()
		y, errY := xy[1].Float64()
		if errX != nil || errY != nil || x < 0 || y < 0 || x > 1<<20 || y > 1<<20 {
			return fieldError("coordinates", "coordinates must be non-negative pixel positions")
		}
		points[i] = image.Pt(int(x), int(y))
	}
	model, err := b.str("model_id", false)
	if err != nil {
		return err
	}
	m, err := h.gen.Segment(c.Request().Context(), generate.Caller{}, model, data, points)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"mask": base64.StdEncoding.EncodeToString(m.Packed)})
}

// encodePNG encodes img as PNG.
func encodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode png response: %w", err)
	}
	return buf.Bytes(), nil
}
