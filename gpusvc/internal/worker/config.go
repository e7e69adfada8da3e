package worker

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/jobs"
)

// Config holds the worker settings of one gpusvc.
type Config struct {
	// Jobs are the settings shared with accountsvc.
	Jobs jobs.Config
	// Concurrency is how many jobs this process runs at once
	// (WORKER_CONCURRENCY, default 2); 0 disables the workers (the process
	// still enqueues async images).
	Concurrency int
	// VideoWebhookURL is the Discord webhook of video notifications
	// (VIDEO_WEBHOOK_URL, legacy video_generation_discord_webhook); ""
	// skips them.
	VideoWebhookURL string
	// RescueAfter is River's own stuck-job rescue horizon
	// (JOB_RESCUE_AFTER, default the longest job timeout + 10 minutes): a
	// backstop behind the heartbeat check, which finds dead workers much
	// sooner.
	RescueAfter time.Duration
	// SweepInterval is how often the stale-job sweep and the adoption of
	// orphaned queued rows run (JOB_SWEEP_INTERVAL, default a quarter of
	// the heartbeat timeout, at least 1s).
	SweepInterval time.Duration
}

// LoadConfig reads the worker settings from l.
func LoadConfig(l *config.Loader) Config {
	jc := jobs.LoadConfig(l)
	return Config{
		Jobs:            jc,
		Concurrency:     l.Int("WORKER_CONCURRENCY", "", 2),
		VideoWebhookURL: l.Credential("VIDEO_WEBHOOK_URL", "video_generation_discord_webhook", ""),
		RescueAfter:     l.Duration("JOB_RESCUE_AFTER", "", 0),
		SweepInterval:   l.Duration("JOB_SWEEP_INTERVAL", "", 0),
	}
}

// WithDefaults fills zero durations.
func (c Config) WithDefaults() Config {
	c.Jobs = c.Jobs.WithDefaults()
	c.RescueAfter = config.OrDefault(c.RescueAfter, c.Jobs.MaxTimeout()+10*time.Minute)
	c.SweepInterval = config.OrDefault(c.SweepInterval, max(c.Jobs.HeartbeatTimeout/4, time.Second))
	return c
}

// Validate reports every bad setting, naming its variable.
func (c Config) Validate() error {
	errs := []error{c.Jobs.Validate()}
	if c.Concurrency < 0 || c.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("WORKER_CONCURRENCY: must be between 0 and 256, got %d", c.Concurrency))
	}
	if c.VideoWebhookURL != "" {
		if u, err := url.Parse(c.VideoWebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("VIDEO_WEBHOOK_URL: must be an http(s) URL"))
		}
	}
	d := c.WithDefaults()
	if d.RescueAfter <= d.Jobs.MaxTimeout() {
		errs = append(errs, fmt.Errorf("JOB_RESCUE_AFTER: must be longer than the longest job timeout (%s)", d.Jobs.MaxTimeout()))
	}
	return errors.Join(errs...)
}

// Enabled reports whether this process works the queue.
func (c Config) Enabled() bool { return c.Concurrency > 0 }
