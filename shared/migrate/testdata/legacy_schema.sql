-- The legacy production schema as the old README and migration scripts built
-- it, minus the README's broken UNIQUE (user_id, name, url) on audio.

CREATE TABLE users (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email VARCHAR(128) NOT NULL UNIQUE,
    password VARCHAR(128) NOT NULL,
    is_verified BOOLEAN DEFAULT FALSE NOT NULL,
    verify_key VARCHAR(128),
    referral_token VARCHAR(128),
    metadata JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE password_recovery (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id INT NOT NULL,
    reset_key VARCHAR(128),
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE images (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id INT NOT NULL,
    base_64 TEXT NOT NULL,
    thumb_base_64 TEXT NOT NULL,
    hash VARCHAR(256) NOT NULL,
    metadata JSON NOT NULL,
    cdn_id VARCHAR(36),
    is_public BOOLEAN DEFAULT FALSE NOT NULL,
    is_liked BOOLEAN DEFAULT FALSE NOT NULL,
    parent_id INT,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_user FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE CASCADE
);

CREATE TABLE audio (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id INT NOT NULL,
    name VARCHAR(256) NOT NULL,
    cdn_id VARCHAR(256) NOT NULL,
    size BIGINT NOT NULL,
    metadata JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    state VARCHAR(36) DEFAULT 'UNFINISHED',
    CONSTRAINT fk_user FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE CASCADE
);

-- README version, then migrations/video_upload.py.
CREATE TABLE videos (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id INT NOT NULL,
    metadata JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_user FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE CASCADE
);
ALTER TABLE videos ADD COLUMN cdn_id VARCHAR(36);
ALTER TABLE videos ADD COLUMN start_frame_id INT NOT NULL;
ALTER TABLE videos ADD CONSTRAINT fk_start_frame FOREIGN KEY(start_frame_id) REFERENCES images(id) ON DELETE CASCADE;
ALTER TABLE videos ADD COLUMN end_frame_id INT NOT NULL;
ALTER TABLE videos ADD CONSTRAINT fk_end_frame FOREIGN KEY(end_frame_id) REFERENCES images(id) ON DELETE CASCADE;
ALTER TABLE videos ADD COLUMN start_frame_cdn_id VARCHAR(36);
ALTER TABLE videos ADD COLUMN end_frame_cdn_id VARCHAR(36);
ALTER TABLE videos ADD COLUMN duration INT NOT NULL;
ALTER TABLE videos ADD COLUMN name VARCHAR(256);

CREATE TABLE links (
    id INT GENERATED ALWAYS AS IDENTITY,
    user_id INT NOT NULL,
    metadata JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_user FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE CASCADE
);

CREATE TABLE models (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id VARCHAR(128) NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL DEFAULT NOW()
);

CREATE TABLE api_hosts (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address VARCHAR(256) NOT NULL UNIQUE
);

CREATE TABLE referrals (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    referrer_id INT NOT NULL,
    referred_id INT NOT NULL,
    metadata JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    CONSTRAINT fk_referrer FOREIGN KEY(referrer_id) REFERENCES users(id) ON DELETE CASCADE,
    CONSTRAINT fk_referred FOREIGN KEY(referred_id) REFERENCES users(id) ON DELETE CASCADE
);

CREATE TABLE rewards (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name VARCHAR(128) NOT NULL,
    sql TEXT NOT NULL,
    metadata JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW()
);

CREATE TABLE transactions (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    metadata JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMP,
    user_id INT NOT NULL,
    type VARCHAR(128) NOT NULL,
    amount INT NOT NULL,
    amount_remaining INT NOT NULL,
    memo VARCHAR(256) NOT NULL,
    CONSTRAINT fk_user FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE CASCADE
);

-- migrations/video_generation.py: cdn_id nullable VARCHAR(36).
CREATE TABLE video_projects (
    id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id INT NOT NULL,
    audio_id INT NOT NULL REFERENCES audio(id) ON DELETE CASCADE,
    metadata JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
    state VARCHAR(36) DEFAULT 'UNFINISHED',
    cdn_id VARCHAR(36),
    CONSTRAINT fk_user FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE CASCADE
);
