-- Fixes for the legacy schema defects D1-D3 (docs/legacy-contract.md §10) that can
-- be made without dropping or rewriting a single row: the audio unique key the
-- README meant to create, a primary key on links, case-insensitive email
-- lookups and the indexes every hot query needs.
--
-- Uniqueness that production data might already violate is added only when the
-- data allows it. Otherwise the migration creates a plain index with the same
-- columns (same lookup speed), raises a NOTICE naming the problem, and leaves
-- the rows alone: deciding which of two accounts is the real one is a support
-- task, not something a migration may do. Stores must look emails up by
-- lower(email) either way; the index serves both cases.
--
-- Plain CREATE INDEX (not CONCURRENTLY) because goose runs each file in one
-- transaction; the legacy tables are small enough for the brief lock.

-- +goose Up

-- D1: UNIQUE (user_id, name, cdn_id) on audio, unless an equivalent unique
-- index already exists (00001 creates it on fresh databases).
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (
        SELECT 1
        FROM pg_index i
        WHERE i.indrelid = 'audio'::regclass
          AND i.indisunique
          AND i.indexprs IS NULL
          AND i.indpred IS NULL
          AND i.indnkeyatts = 3
          AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
               FROM pg_attribute a
               WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = ARRAY['cdn_id', 'name', 'user_id']
    ) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM audio GROUP BY user_id, name, cdn_id HAVING count(*) > 1) THEN
        RAISE NOTICE 'audio has duplicate (user_id, name, cdn_id) rows; creating a non-unique index instead';
        CREATE INDEX IF NOT EXISTS audio_user_id_name_cdn_id_idx ON audio (user_id, name, cdn_id);
    ELSE
        CREATE UNIQUE INDEX IF NOT EXISTS audio_user_id_name_cdn_id_uniq ON audio (user_id, name, cdn_id);
    END IF;
END
$$;
-- +goose StatementEnd

-- D2: links has no primary key.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'links'::regclass AND contype = 'p') THEN
        ALTER TABLE links ADD CONSTRAINT links_pkey PRIMARY KEY (id);
    END IF;
END
$$;
-- +goose StatementEnd

-- D3: users.email is unique only case-sensitively.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM users GROUP BY lower(email) HAVING count(*) > 1) THEN
        RAISE NOTICE 'users has emails differing only in case; creating a non-unique index on lower(email) instead';
        CREATE INDEX IF NOT EXISTS users_email_lower_idx ON users (lower(email));
    ELSE
        CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_uniq ON users (lower(email));
    END IF;
END
$$;
-- +goose StatementEnd

-- D3: missing indexes.
CREATE INDEX IF NOT EXISTS images_user_id_idx ON images (user_id);
CREATE INDEX IF NOT EXISTS images_hash_idx ON images (hash);
CREATE INDEX IF NOT EXISTS images_user_id_hash_idx ON images (user_id, hash);
CREATE INDEX IF NOT EXISTS audio_state_idx ON audio (state);
CREATE INDEX IF NOT EXISTS transactions_user_id_expires_at_idx ON transactions (user_id, expires_at);
CREATE INDEX IF NOT EXISTS password_recovery_user_id_idx ON password_recovery (user_id);
CREATE INDEX IF NOT EXISTS referrals_referred_id_idx ON referrals (referred_id);
CREATE INDEX IF NOT EXISTS referrals_referrer_id_idx ON referrals (referrer_id);
CREATE INDEX IF NOT EXISTS video_projects_user_id_idx ON video_projects (user_id);
CREATE INDEX IF NOT EXISTS videos_user_id_idx ON videos (user_id);
CREATE INDEX IF NOT EXISTS links_user_id_idx ON links (user_id);

-- +goose Down
DROP INDEX IF EXISTS links_user_id_idx;
DROP INDEX IF EXISTS videos_user_id_idx;
DROP INDEX IF EXISTS video_projects_user_id_idx;
DROP INDEX IF EXISTS referrals_referrer_id_idx;
DROP INDEX IF EXISTS referrals_referred_id_idx;
DROP INDEX IF EXISTS password_recovery_user_id_idx;
DROP INDEX IF EXISTS transactions_user_id_expires_at_idx;
DROP INDEX IF EXISTS audio_state_idx;
DROP INDEX IF EXISTS images_user_id_hash_idx;
DROP INDEX IF EXISTS images_hash_idx;
DROP INDEX IF EXISTS images_user_id_idx;
DROP INDEX IF EXISTS users_email_lower_uniq;
DROP INDEX IF EXISTS users_email_lower_idx;
-- links_pkey is kept: the Up cannot tell whether it created it or found it,
-- and a table without a primary key is the defect being fixed.
DROP INDEX IF EXISTS audio_user_id_name_cdn_id_uniq;
DROP INDEX IF EXISTS audio_user_id_name_cdn_id_idx;
