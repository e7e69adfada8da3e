// Package jobs holds the durable jobs shared by accountsvc and gpusvc: the
// job kinds and their River arguments, the transactional enqueue helpers,
// the jobs table store (the owner-checked source of truth for state, queue
// position, progress, results and errors), cancellation, and the Redis
// pub/sub progress events.
//
// River (riverqueue/river on PostgreSQL) executes the jobs; its workers run
// inside gpusvc (gpusvc/internal/worker). A job is always enqueued in the
// same transaction that sets the legacy state column (audio.state,
// video_projects.state) to QUEUED, so no queued row is ever without its job.
// Those rows belong to shared/library, whose functions this package calls
// (in the caller's transaction) to read and mirror their state; this
// package owns the jobs table and River's river_job (CountQueues).
//
// Order: with Config.Fairness "fair" (JOB_FAIRNESS) every job gets a
// per-user start-time fair queueing tag at enqueue, stored in jobs.fair_at
// and mapped onto the River job's scheduled_at, so that River's own fetch
// order interleaves users by their work (fair.go); "fifo" keeps arrival
// order.
//
// State machine: QUEUED → PROCESSING → COMPLETED | ERROR, and QUEUED or
// PROCESSING → CANCELED. Terminal states never change again; every
// transition method is a guarded statement, so concurrent or repeated
// callers (River re-runs a job at least once) cannot move a job backwards.
//
// This package must never run inference, touch media storage or send
// notifications; it only records what the workers do. Redis holds only
// the progress events, which may be lost: PostgreSQL is the truth.
package jobs
