package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/notify"
)

// notifyFinished sends a finished job's notifications once (jobs.notified_at):
// for video projects the legacy email and Discord embed on COMPLETED and
// ERROR (legacy §8); for other kinds a Discord embed on ERROR. Failures are
// logged and never change the job's state (legacy C19).
func (r *Runner) notifyFinished(ctx context.Context, j jobs.Job) {
	r.notifyFailureDetail(ctx, j, nil)
}

// notifyFailureDetail is notifyFinished with the full error for the
// operators' embed (the owner sees only j.Error).
func (r *Runner) notifyFailureDetail(ctx context.Context, j jobs.Job, cause error) {
	if j.NotifiedAt != nil || !j.State.Terminal() || j.State == jobs.StateCanceled {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	log := r.log.With(zap.Int64("job_id", j.ID))
	elapsed := time.Duration(0)
	if j.StartedAt != nil && j.FinishedAt != nil {
		elapsed = j.FinishedAt.Sub(*j.StartedAt)
	}
	detail := j.Error
	if cause != nil {
		detail = cause.Error()
	}
	var embed notify.Embed
	switch {
	case j.Kind == jobs.KindVideo:
		url := ""
		if j.State == jobs.StateCompleted {
			var res jobs.Result
			_ = json.Unmarshal(j.Result, &res)
			url = res.URL
		}
		to, err := r.userEmail(ctx, j.UserID)
		if err != nil {
			log.Warn("video notification: no recipient", zap.Error(err))
		} else if r.opts.Email != nil {
			var m email.Message
			if j.State == jobs.StateCompleted {
				m, err = email.VideoSuccess(to, url)
			} else {
				m, err = email.VideoFailure(to, r.opts.AppBaseURL)
			}
			if err == nil {
				err = r.opts.Email.Send(ctx, m)
			}
			if err != nil {
				log.Warn("video email failed", zap.Error(err))
			}
		}
		fields := []notify.Field{{Name: "Time to process", Value: notify.Clock(elapsed)}}
		if j.State == jobs.StateCompleted {
			embed = notify.Embed{Title: "Video COMPLETED", Description: url}
			fields = append(fields, notify.Field{Name: "Video Length", Value: notify.Clock(r.videoLength(ctx, j))})
		} else {
			embed = notify.Embed{Title: "Video ERROR", Description: "```\n" + detail + "\n```"}
		}
		embed.Fields = append(fields,
			notify.Field{Name: "User id", Value: strconv.FormatInt(j.UserID, 10)},
			notify.Field{Name: "Project id", Value: strconv.FormatInt(j.VideoProjectID, 10)})
	case j.State == jobs.StateError:
		embed = notify.Embed{Title: titleKind(j.Kind) + " ERROR", Description: "```\n" + detail + "\n```",
			Fields: []notify.Field{{Name: "Time to process", Value: notify.Clock(elapsed)},
				{Name: "User id", Value: strconv.FormatInt(j.UserID, 10)}, {Name: "Job id", Value: j.PublicID}}}
	default:
		_ = r.store.MarkNotified(ctx, j.ID)
		return
	}
	if _, err := r.opts.Discord.Send(ctx, notify.Message{Embeds: []notify.Embed{embed}}); err != nil {
		log.Warn("discord webhook failed", zap.Error(err))
	}
	if err := r.store.MarkNotified(ctx, j.ID); err != nil {
		log.Warn("mark job notified failed", zap.Error(err))
	}
}

func titleKind(k jobs.Kind) string {
	switch k {
	case jobs.KindAudio:
		return "Audio"
	case jobs.KindImage:
		return "Image"
	}
	return "Video"
}

func (r *Runner) userEmail(ctx context.Context, userID int64) (string, error) {
	var to string
	err := r.opts.Pool.QueryRow(ctx, `SELECT email FROM users WHERE id = $1`, userID).Scan(&to)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", errors.New("user not found")
	}
	return to, err
}

// videoLength is the length the project's timestamps imply.
func (r *Runner) videoLength(ctx context.Context, j jobs.Job) time.Duration {
	p, err := library.LoadProject(ctx, r.opts.Pool, j.VideoProjectID)
	if err != nil {
		return 0
	}
	plan, err := jobs.PlanVideo(p.Metadata, r.cfg.Jobs.VideoFPS, r.cfg.Jobs.VideoMaxDuration)
	if err != nil {
		return 0
	}
	return time.Duration(plan.Duration() * float64(time.Second))
}
