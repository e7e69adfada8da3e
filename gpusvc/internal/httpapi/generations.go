package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/jobs"
)

// ImageEnqueuer queues an async image generation; *worker.Runner
// implements it.
type ImageEnqueuer interface {
	EnqueueImage(ctx context.Context, userID int64, job generate.ImageJob) (jobs.Job, error)
}

// imageGenerationResponse is the 202 body of POST /v1/images/generations.
type imageGenerationResponse struct {
	JobID string `json:"job_id"`
}

// handleImageGenerationCreate is POST /v1/images/generations: the fields of
// POST /images, answered 202 {"job_id"} at once; the images land in the
// library and GET /v1/jobs/<id> reports them.
func (h *handlers) handleImageGenerationCreate(c echo.Context) error {
	ctx := c.Request().Context()
	claims, ok := auth.FromContext(ctx)
	if !ok || claims.Anonymous {
		return apperr.Unauthorized(auth.MsgTokenMissing)
	}
	job, err := h.readImageJob(c)
	if err != nil {
		return err
	}
	if err := job.Validate(h.gen.Limits()); err != nil {
		return err
	}
	j, err := h.Jobs.EnqueueImage(ctx, claims.UserID, job)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/jobs/"+j.PublicID)
	return c.JSON(http.StatusAccepted, imageGenerationResponse{JobID: j.PublicID})
}
