-- Fair sharing of the GPU fleet among async jobs (shared/jobs, issue 17).
-- With JOB_FAIRNESS=fair every job gets a start-time fair queueing tag per
-- user when it is enqueued: fair_at = max(virtual time, the user's last
-- finish tag) and finish = fair_at + fair_work, in work units (one image
-- sample, one second of audio or video). The tag is also written to the
-- River job's scheduled_at (mapped into the past), which is how River's
-- fetch order (priority, scheduled_at, id) becomes the fair order. Keeping
-- the tags here lets them, and the virtual time derived from them,
-- survive restarts. NULL means the job was queued in FIFO mode.

-- +goose Up
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS fair_at DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS fair_work DOUBLE PRECISION;
-- Virtual time: the smallest tag among active jobs, else the largest tag.
CREATE INDEX IF NOT EXISTS jobs_fair_active_idx ON jobs (fair_at)
    WHERE fair_at IS NOT NULL AND state IN ('QUEUED', 'PROCESSING');
CREATE INDEX IF NOT EXISTS jobs_fair_at_idx ON jobs (fair_at) WHERE fair_at IS NOT NULL;
-- A user's last finish tag.
CREATE INDEX IF NOT EXISTS jobs_user_fair_idx ON jobs (user_id, fair_at) WHERE fair_at IS NOT NULL;

-- +goose Down
DROP INDEX IF EXISTS jobs_user_fair_idx;
DROP INDEX IF EXISTS jobs_fair_at_idx;
DROP INDEX IF EXISTS jobs_fair_active_idx;
ALTER TABLE jobs DROP COLUMN IF EXISTS fair_work;
ALTER TABLE jobs DROP COLUMN IF EXISTS fair_at;
