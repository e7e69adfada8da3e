package generate

import (
	"context"
	"errors"
	"fmt"
	"image"

	xdraw "golang.org/x/image/draw"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/models"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/credits"
)

// Caller identifies who pays for a model route. The zero value is a free,
// unidentified caller (the challenge-token-only routes).
type Caller struct {
	// UserID pays when Charged is set.
	UserID int64
	// Anonymous callers are never charged.
	Anonymous bool
	// Charged makes the route cost credits (the JWT routes).
	Charged bool
	// Key identifies the request for idempotent charging.
	Key string
}

// resolveOp resolves modelID and checks it offers op (501 otherwise).
func (s *Service) resolveOp(ctx context.Context, modelID string, op inference.Op) (models.Route, error) {
	route, err := s.opts.Registry.Resolve(ctx, modelID)
	if err != nil {
		return models.Route{}, err
	}
	return route, route.Check(op)
}

// runRoute charges (a hold, when the caller pays), runs fn within
// capacity, then settles the hold before the answer goes out; on failure,
// a panic in fn included, it releases the hold. A hold the sweeper
// refunded first fails the request (504) instead of answering for free.
func (s *Service) runRoute(ctx context.Context, c Caller, op inference.Op, route models.Route, fn func(ctx context.Context) error) error {
	// The capacity place first, as for images (GenerateImages): a full
	// host refuses having charged nothing.
	ticket, err := s.reserve(ctx, userClaim(c.UserID, RouteUnits(op)))
	if err != nil {
		return err
	}
	defer ticket.Cancel()
	var debit credits.Debit
	if c.Charged {
		if debit, err = s.charge(ctx, c.UserID, c.Anonymous, op, 1, c.Key); err != nil {
			return err
		}
	}
	settled := false
	defer func() {
		if !settled {
			s.release(ctx, debit)
		}
	}()
	if err := s.runIn(ctx, ticket.Wait, op, route.Backend.Name(), fn); err != nil {
		return err
	}
	if err := s.opts.Charger.Settle(ctx, nil, debit.ID); err != nil {
		if errors.Is(err, credits.ErrHoldReleased) {
			settled = true
			s.opts.Metrics.holdsLost.Inc()
		}
		return err
	}
	settled = true
	return nil
}

// ExtendPrompt enriches a prompt (legacy /extend_prompt).
func (s *Service) ExtendPrompt(ctx context.Context, c Caller, modelID, prompt string) (string, error) {
	if err := checkPrompt("prompt", prompt, s.opts.Limits.MaxPromptChars); err != nil {
		return "", err
	}
	route, err := s.resolveOp(ctx, modelID, inference.OpExtendPrompt)
	if err != nil {
		return "", err
	}
	var out string
	err = s.runRoute(ctx, c, inference.OpExtendPrompt, route, func(ctx context.Context) error {
		out, err = route.Backend.ExtendPrompt(ctx, prompt)
		return err
	})
	return out, err
}

// Interrogate describes an image as a prompt (legacy /interrogate).
func (s *Service) Interrogate(ctx context.Context, c Caller, modelID string, data []byte) (string, error) {
	route, err := s.resolveOp(ctx, modelID, inference.OpInterrogate)
	if err != nil {
		return "", err
	}
	if _, err := s.checkInput("base_64", data); err != nil {
		return "", err
	}
	var out string
	err = s.runRoute(ctx, c, inference.OpInterrogate, route, func(ctx context.Context) error {
		img, err := s.decodeInput("base_64", data)
		if err != nil {
			return err
		}
		out, err = route.Backend.Interrogate(ctx, route.BackendModel, img)
		return err
	})
	return out, err
}

// Upscale enlarges an image 4× after shrinking it so its longest side is at
// most Limits.UpscaleInputSide (legacy /upscale: output ≤ 1536 px). Nothing
// is stored.
func (s *Service) Upscale(ctx context.Context, c Caller, modelID string, data []byte) (image.Image, error) {
	route, err := s.resolveOp(ctx, modelID, inference.OpUpscale)
	if err != nil {
		return nil, err
	}
	if _, err := s.checkInput("base_64", data); err != nil {
		return nil, err
	}
	var out image.Image
	err = s.runRoute(ctx, c, inference.OpUpscale, route, func(ctx context.Context) error {
		img, err := s.decodeInput("base_64", data)
		if err != nil {
			return err
		}
		b := img.Bounds()
		if w, h := fit(b.Dx(), b.Dy(), s.opts.Limits.UpscaleInputSide); w != b.Dx() || h != b.Dy() {
			img = resize(img, w, h, xdraw.CatmullRom)
		}
		if out, err = route.Backend.Upscale(ctx, inference.UpscaleRequest{Model: route.BackendModel, Image: img, Scale: 4}); err != nil {
			return err
		}
		if out == nil || out.Bounds().Empty() {
			// Inside fn, so that the charge is refunded.
			return apperr.BadGateway(fmt.Sprintf("The %s backend returned an empty image", route.Backend.Name()))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Mask is the output of Segment.
type Mask struct {
	// Packed is the W×H mask, row-major, bit-packed MSB-first.
	Packed        []byte
	Width, Height int
}

// Segment grows a mask from foreground points (legacy /mask). Points are
// pixel coordinates of the input image and must lie inside it.
func (s *Service) Segment(ctx context.Context, c Caller, modelID string, data []byte, points []image.Point) (Mask, error) {
	if len(points) == 0 || len(points) > s.opts.Limits.MaxPoints {
		return Mask{}, invalidField("coordinates", fmt.Sprintf("coordinates must hold 1 to %d points", s.opts.Limits.MaxPoints))
	}
	route, err := s.resolveOp(ctx, modelID, inference.OpSegment)
	if err != nil {
		return Mask{}, err
	}
	info, err := s.checkInput("base64", data)
	if err != nil {
		return Mask{}, err
	}
	for _, p := range points {
		if p.X < 0 || p.Y < 0 || p.X >= info.Width || p.Y >= info.Height {
			return Mask{}, invalidField("coordinates", fmt.Sprintf("point [%d, %d] is outside the %d×%d image", p.X, p.Y, info.Width, info.Height))
		}
	}
	var bits []bool
	err = s.runRoute(ctx, c, inference.OpSegment, route, func(ctx context.Context) error {
		img, err := s.decodeInput("base64", data)
		if err != nil {
			return err
		}
		pts := points
		if b := img.Bounds(); b.Min != (image.Point{}) {
			pts = make([]image.Point, len(points))
			for i, p := range points {
				pts[i] = p.Add(b.Min)
			}
		}
		bits, err = route.Backend.Segment(ctx, inference.SegmentRequest{Image: img, Points: pts})
		if err == nil && len(bits) != info.Width*info.Height {
			// Inside fn, so that the charge is released.
			return apperr.BadGateway(fmt.Sprintf("The %s backend returned a mask of the wrong size", route.Backend.Name()))
		}
		return err
	})
	if err != nil {
		return Mask{}, err
	}
	return Mask{Packed: PackMask(bits), Width: info.Width, Height: info.Height}, nil
}
