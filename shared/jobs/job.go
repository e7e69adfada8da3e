package jobs

import (
	"encoding/json"
	"time"
)

// Kind is what a job does.
type Kind string

// The job kinds.
const (
	KindImage Kind = "image" // async image generation (POST /v1/images/generations)
	KindAudio Kind = "audio" // text to audio, melody, extend, split (legacy §7)
	KindVideo Kind = "video" // a video project render (legacy §8)
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == KindImage || k == KindAudio || k == KindVideo }

// State is a job's state; the values are the legacy state column values.
type State string

// The states. QUEUED and PROCESSING are active; the others are terminal.
const (
	StateQueued     State = "QUEUED"
	StateProcessing State = "PROCESSING"
	StateCompleted  State = "COMPLETED"
	StateError      State = "ERROR"
	StateCanceled   State = "CANCELED"
)

// Terminal reports whether s never changes again.
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateError || s == StateCanceled
}

// Job is one row of the jobs table. Times are UTC; nil means "not yet".
type Job struct {
	// ID is the internal id (River's args carry it); never shown to users.
	ID int64
	// PublicID is the unguessable id of the API (a UUID).
	PublicID string
	UserID   int64
	Kind     Kind
	State    State
	// Progress is 0..1; Stage names the current step ("queued",
	// "generating", "frames", "encoding", "uploading", ...).
	Progress float64
	Stage    string
	// Params is the work's input (the image request; empty for audio and
	// video, whose input is their legacy row).
	Params json.RawMessage
	// Result holds the result ids once COMPLETED (see Result); nil before.
	Result json.RawMessage
	// Error is the reason of an ERROR (or "canceled"); "" otherwise.
	Error string
	// RiverJobID is the River job executing this one; 0 before insert.
	RiverJobID int64
	// DebitKey is the idempotency key of the job's charge.
	DebitKey string
	// Cost is the credits charged (or to be charged) for the work.
	Cost int64
	// Charged reports whether the debit was made.
	Charged bool
	// AudioID and VideoProjectID are the legacy rows the job works on;
	// 0 when not applicable.
	AudioID        int64
	VideoProjectID int64
	// CancelRequested is set by a cancel of a running job; the worker
	// stops at its next step.
	CancelRequested bool
	// Attempt is the River attempt that last started the job.
	Attempt int
	// FairAt is the job's start tag in the fair order and FairWork its
	// weight, in work units (see fair.go); nil and 0 for a job queued in
	// FIFO mode.
	FairAt   *float64
	FairWork float64
	// Seq grows with every change of the row (see Event.Seq).
	Seq        int64
	NotifiedAt *time.Time
	// HeartbeatAt is the last sign of life of the worker running it.
	HeartbeatAt *time.Time
	QueuedAt    time.Time
	CreatedAt   time.Time
	StartedAt   *time.Time
	FinishedAt  *time.Time
}

// Result is the JSON stored in Job.Result: the ids of what the job made.
type Result struct {
	// ImageIDs are images rows (async image generation).
	ImageIDs []int64 `json:"image_ids,omitempty"`
	// AudioIDs are audio rows (the job's own row first; split adds stems).
	AudioIDs []int64 `json:"audio_ids,omitempty"`
	// VideoProjectID is the rendered project.
	VideoProjectID int64 `json:"video_project_id,omitempty"`
	// URL is the public URL of the main object, when one exists.
	URL string `json:"url,omitempty"`
}
