-- Durable jobs (shared/jobs): one row per async image generation, audio job
-- or video project render, the owner-checked source of truth behind
-- GET /v1/jobs/<id>. River (river_job, created by River's own migrations)
-- executes them; jobs.river_job_id links the two. The legacy state columns
-- (audio.state, video_projects.state) keep their values and gain CANCELED;
-- they are VARCHAR(36) without a CHECK, so no legacy column changes here.
--
-- Invariants:
--   * a QUEUED or PROCESSING job exists at most once per audio row and per
--     video project (partial unique indexes), so a re-queue or an adopted
--     legacy row can never run twice at once;
--   * seq grows with every change of the row, so that event consumers can
--     drop events older than a snapshot they read.
-- No legacy row is read or written by this migration.

-- +goose Up
CREATE TABLE IF NOT EXISTS jobs (
    id               BIGSERIAL PRIMARY KEY,
    public_id        UUID NOT NULL UNIQUE,
    user_id          INT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind             VARCHAR(32) NOT NULL,
    state            VARCHAR(16) NOT NULL DEFAULT 'QUEUED'
                     CHECK (state IN ('QUEUED', 'PROCESSING', 'COMPLETED', 'ERROR', 'CANCELED')),
    progress         DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    stage            VARCHAR(64) NOT NULL DEFAULT 'queued',
    params           JSONB NOT NULL DEFAULT '{}',
    result           JSONB,
    error            TEXT,
    river_job_id     BIGINT,
    debit_key        VARCHAR(255) NOT NULL,
    cost             BIGINT NOT NULL DEFAULT 0,
    charged          BOOLEAN NOT NULL DEFAULT false,
    audio_id         INT REFERENCES audio (id) ON DELETE CASCADE,
    video_project_id INT REFERENCES video_projects (id) ON DELETE CASCADE,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    attempt          INT NOT NULL DEFAULT 0,
    seq              BIGINT NOT NULL DEFAULT 1,
    notified_at      TIMESTAMPTZ,
    heartbeat_at     TIMESTAMPTZ,
    queued_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ
);

-- Queue positions: rank among QUEUED jobs by queue time.
CREATE INDEX IF NOT EXISTS jobs_queued_idx ON jobs (queued_at, id) WHERE state = 'QUEUED';
CREATE INDEX IF NOT EXISTS jobs_kind_queued_idx ON jobs (kind, queued_at, id) WHERE state = 'QUEUED';
-- Per-user caps and the stuck-job sweep.
CREATE INDEX IF NOT EXISTS jobs_user_active_idx ON jobs (user_id, state) WHERE state IN ('QUEUED', 'PROCESSING');
CREATE INDEX IF NOT EXISTS jobs_processing_heartbeat_idx ON jobs (heartbeat_at) WHERE state = 'PROCESSING';
CREATE INDEX IF NOT EXISTS jobs_user_id_created_at_idx ON jobs (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_audio_id_idx ON jobs (audio_id) WHERE audio_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_video_project_id_idx ON jobs (video_project_id) WHERE video_project_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_audio_active_uniq
    ON jobs (audio_id) WHERE audio_id IS NOT NULL AND state IN ('QUEUED', 'PROCESSING');
CREATE UNIQUE INDEX IF NOT EXISTS jobs_video_project_active_uniq
    ON jobs (video_project_id) WHERE video_project_id IS NOT NULL AND state IN ('QUEUED', 'PROCESSING');

-- +goose Down
DROP TABLE IF EXISTS jobs;
