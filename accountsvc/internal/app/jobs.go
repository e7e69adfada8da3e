package app

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/accountsvc/internal/jobapi"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/notify"
)

// newJobs builds the durable-job store, which the library area enqueues
// into (in the transaction that queues an audio row or a video project)
// and the job routes read.
func (a *App) newJobs() error {
	client, err := jobs.NewInsertClient(a.srv.DB)
	if err != nil {
		return err
	}
	a.events = jobs.NewEvents(a.srv.Redis, a.cfg.RedisPrefix)
	a.jobs = jobs.NewStore(jobs.Options{
		Pool:     a.srv.DB,
		River:    client,
		Events:   a.events,
		Ledger:   a.ledger,
		Registry: jobs.NewRegistry(a.srv.Redis, a.cfg.RedisPrefix),
		Config:   a.cfg.Jobs,
		Log:      a.log,
	})
	return nil
}

// routesJobs registers the job routes: GET /v1/jobs/<id>, GET
// /v1/jobs/<id>/events, DELETE /v1/jobs/<id>. In the local stack it also
// serves the fake Discord webhook the video jobs post to.
func (a *App) routesJobs() {
	log := a.log.Named("jobs")
	jobapi.New(jobapi.Options{
		Store:    a.jobs,
		Events:   a.events,
		Verifier: a.verifier,
		Limiter:  a.limiter,
		// Without Redis a stream polls its row (docs/operations.md).
		OnRedisError: a.failOpen.Func("job_events"),
	}).Register(a.srv.Echo)
	if a.cfg.DevDiscordDir != "" && a.cfg.Environment == "local" {
		rec := notify.NewRecorder(a.cfg.DevDiscordDir)
		a.srv.Echo.POST("/dev/discord/webhook", echo.WrapHandler(http.HandlerFunc(rec.ServeHTTP)))
		log.Info("fake discord webhook at /dev/discord/webhook", zap.String("dir", a.cfg.DevDiscordDir))
	}
}
