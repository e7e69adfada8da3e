-- The user's library (images, audio, links, videos, video projects):
-- unguessable share ids for links (legacy S6: sequential ids were
-- enumerable), the queue time that orders queued audio and video projects
-- (legacy C13: the order followed the last metadata edit), and the indexes
-- the library routes need. Additive only: legacy rows keep share_id NULL, so
-- their numeric ids keep working as share links.

-- +goose Up
ALTER TABLE links ADD COLUMN IF NOT EXISTS share_id VARCHAR(64);
CREATE UNIQUE INDEX IF NOT EXISTS links_share_id_uniq ON links (share_id);

ALTER TABLE audio ADD COLUMN IF NOT EXISTS queued_at TIMESTAMP;
ALTER TABLE video_projects ADD COLUMN IF NOT EXISTS queued_at TIMESTAMP;

CREATE INDEX IF NOT EXISTS images_cdn_id_idx ON images (cdn_id);
CREATE INDEX IF NOT EXISTS images_public_id_idx ON images (id DESC) WHERE is_public;
CREATE INDEX IF NOT EXISTS audio_user_id_idx ON audio (user_id);
CREATE INDEX IF NOT EXISTS audio_queued_idx ON audio (queued_at, id) WHERE state = 'QUEUED';
CREATE INDEX IF NOT EXISTS video_projects_queued_idx ON video_projects (queued_at, id) WHERE state = 'QUEUED';
CREATE INDEX IF NOT EXISTS video_projects_audio_id_idx ON video_projects (audio_id);
CREATE INDEX IF NOT EXISTS videos_start_frame_id_idx ON videos (start_frame_id);
CREATE INDEX IF NOT EXISTS videos_end_frame_id_idx ON videos (end_frame_id);

-- +goose Down
DROP INDEX IF EXISTS videos_end_frame_id_idx;
DROP INDEX IF EXISTS videos_start_frame_id_idx;
DROP INDEX IF EXISTS video_projects_audio_id_idx;
DROP INDEX IF EXISTS video_projects_queued_idx;
DROP INDEX IF EXISTS audio_queued_idx;
DROP INDEX IF EXISTS audio_user_id_idx;
DROP INDEX IF EXISTS images_public_id_idx;
DROP INDEX IF EXISTS images_cdn_id_idx;
ALTER TABLE video_projects DROP COLUMN IF EXISTS queued_at;
ALTER TABLE audio DROP COLUMN IF EXISTS queued_at;
DROP INDEX IF EXISTS links_share_id_uniq;
ALTER TABLE links DROP COLUMN IF EXISTS share_id;
