package jobs

import (
	"time"

	"github.com/riverqueue/river"
)

// Queue is the River queue every job kind runs on; each gpusvc works it
// with WORKER_CONCURRENCY slots.
const Queue = "jobs"

// The River job kinds (river_job.kind).
const (
	RiverKindImage = "nounsai_image"
	RiverKindAudio = "nounsai_audio"
	RiverKindVideo = "nounsai_video"
)

// Args is what every River job carries: the jobs row it executes and the
// timeout derived from the size of its work. All other input lives in
// PostgreSQL, so a re-run always sees the current row.
type Args struct {
	// JobID is jobs.id.
	JobID int64 `json:"job_id"`
	// TimeoutSeconds bounds one attempt; 0 means the client default.
	TimeoutSeconds int `json:"timeout_s,omitempty"`
}

// Timeout returns the attempt timeout.
func (a Args) Timeout() time.Duration { return time.Duration(a.TimeoutSeconds) * time.Second }

// ImageArgs runs an async image generation.
type ImageArgs struct{ Args }

// Kind implements river.JobArgs.
func (ImageArgs) Kind() string { return RiverKindImage }

// AudioArgs runs an audio job.
type AudioArgs struct{ Args }

// Kind implements river.JobArgs.
func (AudioArgs) Kind() string { return RiverKindAudio }

// VideoArgs renders a video project.
type VideoArgs struct{ Args }

// Kind implements river.JobArgs.
func (VideoArgs) Kind() string { return RiverKindVideo }

// argsFor returns the River args of a job of kind k.
func argsFor(k Kind, a Args) river.JobArgs {
	switch k {
	case KindImage:
		return ImageArgs{a}
	case KindAudio:
		return AudioArgs{a}
	default:
		return VideoArgs{a}
	}
}
