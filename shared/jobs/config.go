package jobs

import (
	"errors"
	"fmt"
	"time"

	"github.com/nounsai/sdserver/shared/config"
)

// Config holds the job settings both services share (accountsvc enqueues
// and cancels, gpusvc runs). Load it with LoadConfig; tests build literals
// and call WithDefaults.
type Config struct {
	// MaxQueuedPerUser caps a user's QUEUED jobs; enqueueing beyond it is
	// 429 (JOB_MAX_QUEUED_PER_USER, default 10).
	MaxQueuedPerUser int
	// MaxRunningPerUser caps a user's PROCESSING jobs; further jobs wait
	// in the queue (JOB_MAX_RUNNING_PER_USER, default 2).
	MaxRunningPerUser int
	// Fairness orders the queue of jobs waiting for a worker
	// (JOB_FAIRNESS): FairnessFair (the default) interleaves users by
	// start-time fair queueing weighted by each job's work units, so one
	// user's backlog cannot delay another user's job by more than about
	// one job's service time; FairnessFIFO runs jobs in arrival order.
	Fairness string
	// MaxAttempts is how often River runs a job before it fails for good
	// (JOB_MAX_ATTEMPTS, default 5).
	MaxAttempts int
	// RetryBase is the first retry delay; each further retry doubles it,
	// up to RetryMax (JOB_RETRY_BASE, default 5s; JOB_RETRY_MAX, 10m).
	RetryBase, RetryMax time.Duration
	// HeartbeatTimeout is how long a PROCESSING job may go without a
	// heartbeat before it counts as abandoned (its worker died) and is
	// retried (JOB_HEARTBEAT_TIMEOUT, default 60s). Workers beat every
	// quarter of it.
	HeartbeatTimeout time.Duration
	// TimeoutBase plus the per-unit timeouts give each job's timeout from
	// the size of its work (JOB_TIMEOUT_BASE 2m, JOB_TIMEOUT_PER_AUDIO_SECOND
	// 10s, JOB_TIMEOUT_PER_FRAME 5s, JOB_TIMEOUT_PER_IMAGE 2m).
	TimeoutBase, TimeoutPerAudioSecond, TimeoutPerFrame, TimeoutPerImage time.Duration
	// AudioDuration is the length of generated audio in seconds
	// (AUDIO_DURATION, legacy audio_gen_duration, default 15 as the legacy cron job).
	AudioDuration int
	// VideoFPS is the video frame rate (VIDEO_FPS, legacy
	// video_generation_fps, default 8).
	VideoFPS int
	// VideoMaxDuration is the longest rendered video in seconds
	// (VIDEO_MAX_DURATION, legacy video_generation_max_duration, default 60).
	VideoMaxDuration int
}

// The JOB_FAIRNESS values.
const (
	FairnessFair = "fair"
	FairnessFIFO = "fifo"
)

// Limits on Config values.
const (
	MaxPerUserCap    = 10_000
	MaxAudioDuration = 300
	MaxVideoFPS      = 60
	MaxVideoDuration = 600
)

// LoadConfig reads the job settings from l.
func LoadConfig(l *config.Loader) Config {
	return Config{
		MaxQueuedPerUser:      l.Int("JOB_MAX_QUEUED_PER_USER", "", 10),
		MaxRunningPerUser:     l.Int("JOB_MAX_RUNNING_PER_USER", "", 2),
		Fairness:              l.String("JOB_FAIRNESS", "", FairnessFair),
		MaxAttempts:           l.Int("JOB_MAX_ATTEMPTS", "", 5),
		RetryBase:             l.Duration("JOB_RETRY_BASE", "", 5*time.Second),
		RetryMax:              l.Duration("JOB_RETRY_MAX", "", 10*time.Minute),
		HeartbeatTimeout:      l.Duration("JOB_HEARTBEAT_TIMEOUT", "", time.Minute),
		TimeoutBase:           l.Duration("JOB_TIMEOUT_BASE", "", 2*time.Minute),
		TimeoutPerAudioSecond: l.Duration("JOB_TIMEOUT_PER_AUDIO_SECOND", "", 10*time.Second),
		TimeoutPerFrame:       l.Duration("JOB_TIMEOUT_PER_FRAME", "", 5*time.Second),
		TimeoutPerImage:       l.Duration("JOB_TIMEOUT_PER_IMAGE", "", 2*time.Minute),
		AudioDuration:         l.Int("AUDIO_DURATION", "audio_gen_duration", 15),
		VideoFPS:              l.Int("VIDEO_FPS", "video_generation_fps", 8),
		VideoMaxDuration:      l.Int("VIDEO_MAX_DURATION", "video_generation_max_duration", 60),
	}
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Fairness == "" {
		c.Fairness = FairnessFair
	}
	def(&c.MaxQueuedPerUser, 10)
	def(&c.MaxRunningPerUser, 2)
	def(&c.MaxAttempts, 5)
	defD(&c.RetryBase, 5*time.Second)
	defD(&c.RetryMax, 10*time.Minute)
	defD(&c.HeartbeatTimeout, time.Minute)
	defD(&c.TimeoutBase, 2*time.Minute)
	defD(&c.TimeoutPerAudioSecond, 10*time.Second)
	defD(&c.TimeoutPerFrame, 5*time.Second)
	defD(&c.TimeoutPerImage, 2*time.Minute)
	def(&c.AudioDuration, 15)
	def(&c.VideoFPS, 8)
	def(&c.VideoMaxDuration, 60)
	return c
}

// Validate reports every bad setting, naming its variable.
func (c Config) Validate() error {
	var errs []error
	between := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s: must be between %d and %d, got %d", name, lo, hi, v))
		}
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", name))
		}
	}
	if c.Fairness != FairnessFair && c.Fairness != FairnessFIFO {
		errs = append(errs, fmt.Errorf("JOB_FAIRNESS: must be %q or %q, got %q", FairnessFair, FairnessFIFO, c.Fairness))
	}
	between("JOB_MAX_QUEUED_PER_USER", c.MaxQueuedPerUser, 1, MaxPerUserCap)
	between("JOB_MAX_RUNNING_PER_USER", c.MaxRunningPerUser, 1, MaxPerUserCap)
	between("JOB_MAX_ATTEMPTS", c.MaxAttempts, 1, 100)
	between("AUDIO_DURATION", c.AudioDuration, 1, MaxAudioDuration)
	between("VIDEO_FPS", c.VideoFPS, 1, MaxVideoFPS)
	between("VIDEO_MAX_DURATION", c.VideoMaxDuration, 1, MaxVideoDuration)
	positive("JOB_RETRY_BASE", c.RetryBase)
	positive("JOB_RETRY_MAX", c.RetryMax)
	positive("JOB_HEARTBEAT_TIMEOUT", c.HeartbeatTimeout)
	positive("JOB_TIMEOUT_BASE", c.TimeoutBase)
	positive("JOB_TIMEOUT_PER_AUDIO_SECOND", c.TimeoutPerAudioSecond)
	positive("JOB_TIMEOUT_PER_FRAME", c.TimeoutPerFrame)
	positive("JOB_TIMEOUT_PER_IMAGE", c.TimeoutPerImage)
	return errors.Join(errs...)
}

// AudioTimeout is the timeout of an audio job producing seconds of audio.
func (c Config) AudioTimeout(seconds int) time.Duration {
	return c.TimeoutBase + time.Duration(max(seconds, 1))*c.TimeoutPerAudioSecond
}

// VideoTimeout is the timeout of a video job rendering frames frames.
func (c Config) VideoTimeout(frames int) time.Duration {
	return c.TimeoutBase + time.Duration(max(frames, 1))*c.TimeoutPerFrame
}

// ImageTimeout is the timeout of an image job producing images images.
func (c Config) ImageTimeout(images int) time.Duration {
	return c.TimeoutBase + time.Duration(max(images, 1))*c.TimeoutPerImage
}

// MaxTimeout is the longest timeout any job can get: a video of
// VideoMaxDuration seconds (a bound for River's stuck-job rescuer, which
// must wait longer than any job may run).
func (c Config) MaxTimeout() time.Duration {
	frames := c.VideoMaxDuration*c.VideoFPS + 2*c.VideoMaxDuration + 2
	return max(c.VideoTimeout(frames), c.AudioTimeout(MaxAudioDuration), c.ImageTimeout(MaxImagesPerJob))
}

// MaxImagesPerJob bounds the samples of one async image job.
const MaxImagesPerJob = 8
