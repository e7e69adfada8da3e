-- The production schema of the legacy Flask system: the final README DDL plus
-- the old migration scripts (video_project.py, video_upload.py,
-- video_generation.py, referral_reward.py).
--
-- It must be a no-op on the existing production database, so every statement
-- is idempotent and nothing is changed about tables that already exist: JSON
-- stays JSON, TIMESTAMP stays TIMESTAMP, links keeps its missing primary key.
-- Real fixes live in 00002_legacy_fixes.sql.
--
-- Columns that the old migration scripts added to existing tables are also
-- added with ADD COLUMN IF NOT EXISTS, but *nullable*: adding a NOT NULL column
-- without a default fails on a non-empty table (defect D2), and production
-- already has them, so there the statements do nothing.

-- +goose Up
CREATE TABLE IF NOT EXISTS users (
    id             INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email          VARCHAR(128) NOT NULL UNIQUE,
    password       VARCHAR(128) NOT NULL,
    is_verified    BOOLEAN DEFAULT FALSE NOT NULL,
    verify_key     VARCHAR(128),
    referral_token VARCHAR(128),
    metadata       JSON NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS password_recovery (
    id         INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    INT NOT NULL,
    reset_key  VARCHAR(128),
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS images (
    id            INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       INT NOT NULL,
    base_64       TEXT NOT NULL,
    thumb_base_64 TEXT NOT NULL,
    hash          VARCHAR(256) NOT NULL,
    metadata      JSON NOT NULL,
    cdn_id        VARCHAR(36),
    is_public     BOOLEAN DEFAULT FALSE NOT NULL,
    is_liked      BOOLEAN DEFAULT FALSE NOT NULL,
    parent_id     INT,
    created_at    TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at    TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);

-- The README names the unique column `url`, which video_project.py renamed to
-- cdn_id (defect D1); the constraint is written against cdn_id here. Databases
-- created without it get an equivalent unique index in 00002.
CREATE TABLE IF NOT EXISTS audio (
    id         INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    INT NOT NULL,
    name       VARCHAR(256) NOT NULL,
    cdn_id     VARCHAR(256) NOT NULL,
    size       BIGINT NOT NULL,
    metadata   JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    state      VARCHAR(36) DEFAULT 'UNFINISHED',
    CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    UNIQUE (user_id, name, cdn_id)
);

-- +goose StatementBegin
DO $$
BEGIN
    -- A database from before video_project.py still calls cdn_id `url`.
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'audio' AND column_name = 'url')
       AND NOT EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'audio' AND column_name = 'cdn_id') THEN
        ALTER TABLE audio RENAME COLUMN url TO cdn_id;
    END IF;
END
$$;
-- +goose StatementEnd

ALTER TABLE audio ADD COLUMN IF NOT EXISTS state VARCHAR(36) DEFAULT 'UNFINISHED';

CREATE TABLE IF NOT EXISTS videos (
    id                 INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            INT NOT NULL,
    metadata           JSON NOT NULL,
    created_at         TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at         TIMESTAMP NOT NULL DEFAULT NOW(),
    cdn_id             VARCHAR(36),
    start_frame_id     INT NOT NULL,
    end_frame_id       INT NOT NULL,
    start_frame_cdn_id VARCHAR(36),
    end_frame_cdn_id   VARCHAR(36),
    duration           INT NOT NULL,
    name               VARCHAR(256),
    CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_start_frame FOREIGN KEY (start_frame_id) REFERENCES images (id) ON DELETE CASCADE,
    CONSTRAINT fk_end_frame FOREIGN KEY (end_frame_id) REFERENCES images (id) ON DELETE CASCADE
);

-- Added by migrations/video_upload.py to the README's videos table.
ALTER TABLE videos ADD COLUMN IF NOT EXISTS cdn_id VARCHAR(36);
ALTER TABLE videos ADD COLUMN IF NOT EXISTS start_frame_id INT;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS end_frame_id INT;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS start_frame_cdn_id VARCHAR(36);
ALTER TABLE videos ADD COLUMN IF NOT EXISTS end_frame_cdn_id VARCHAR(36);
ALTER TABLE videos ADD COLUMN IF NOT EXISTS duration INT;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS name VARCHAR(256);

-- Legacy links has no primary key (defect D2); 00002 adds one.
CREATE TABLE IF NOT EXISTS links (
    id         INT GENERATED ALWAYS AS IDENTITY,
    user_id    INT NOT NULL,
    metadata   JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS models (
    id         INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id   VARCHAR(128) NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS api_hosts (
    id      INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address VARCHAR(256) NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS referrals (
    id          INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    referrer_id INT NOT NULL,
    referred_id INT NOT NULL,
    metadata    JSON NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_referrer FOREIGN KEY (referrer_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_referred FOREIGN KEY (referred_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS rewards (
    id         INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       VARCHAR(128) NOT NULL,
    sql        TEXT NOT NULL,
    metadata   JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS transactions (
    id               INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    metadata         JSON NOT NULL,
    created_at       TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at       TIMESTAMP NOT NULL DEFAULT NOW(),
    expires_at       TIMESTAMP,
    user_id          INT NOT NULL,
    type             VARCHAR(128) NOT NULL,
    amount           INT NOT NULL,
    amount_remaining INT NOT NULL,
    memo             VARCHAR(256) NOT NULL,
    CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);

-- cdn_id: the README says NOT NULL VARCHAR(256), video_generation.py made it a
-- nullable VARCHAR(36) (defect D3); nullable VARCHAR(256) accepts both.
CREATE TABLE IF NOT EXISTS video_projects (
    id         INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    INT NOT NULL,
    audio_id   INT NOT NULL REFERENCES audio (id) ON DELETE CASCADE,
    metadata   JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    state      VARCHAR(36) DEFAULT 'UNFINISHED',
    cdn_id     VARCHAR(256),
    CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);

ALTER TABLE video_projects ADD COLUMN IF NOT EXISTS state VARCHAR(36) DEFAULT 'UNFINISHED';
ALTER TABLE video_projects ADD COLUMN IF NOT EXISTS cdn_id VARCHAR(256);

-- +goose Down
-- Intentionally empty: these are the production tables and their data. Rolling
-- back this version only forgets that it was applied.
