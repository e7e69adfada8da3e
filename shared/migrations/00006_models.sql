-- The model registry (gpusvc): which inference backend serves each legacy
-- model_id, under which of the backend's own model names, and which
-- operations it may be used for.
--
-- The legacy table holds only (id, model_id, created_at). Added columns:
--   * backend: "nouns", "a1111" or "replicate"; NULL means the host's
--     default backend (INFERENCE_BACKEND), which is how the local stack
--     serves the legacy ids with the built-in nouns backend.
--   * backend_model: the backend's name for the model (an A1111 checkpoint
--     title, a Replicate "owner/name:version"). It is used only together
--     with an explicit backend: NULL, or a row that follows the default
--     backend, means that backend's default model (INFERENCE_DEFAULT_MODEL).
--   * capabilities: the operations the model may be used for (values of
--     inference.Op); NULL means everything its backend offers. The effective
--     set is always intersected with what the backend reports.
--   * description, enabled, updated_at.
-- Seeds the legacy ids (docs/legacy-contract.md §11) and a "nouns" model for the
-- built-in backend; existing rows are left exactly as they are.

-- +goose Up
ALTER TABLE models ADD COLUMN IF NOT EXISTS backend VARCHAR(32);
ALTER TABLE models ADD COLUMN IF NOT EXISTS backend_model VARCHAR(256);
ALTER TABLE models ADD COLUMN IF NOT EXISTS capabilities TEXT[];
ALTER TABLE models ADD COLUMN IF NOT EXISTS description TEXT NOT NULL DEFAULT '';
ALTER TABLE models ADD COLUMN IF NOT EXISTS enabled BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE models ADD COLUMN IF NOT EXISTS updated_at TIMESTAMP NOT NULL DEFAULT NOW();

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'models'::regclass AND conname = 'models_backend_check') THEN
        ALTER TABLE models ADD CONSTRAINT models_backend_check
            CHECK (backend IS NULL OR backend ~ '^[a-z0-9_]{1,32}$');
    END IF;
END
$$;
-- +goose StatementEnd

INSERT INTO models (model_id, backend, backend_model, capabilities, description) VALUES
    ('nouns', 'nouns', NULL, NULL,
     'Built-in CPU backend: real Nouns artwork from the prompt and seed'),
    ('alxdfy/noggles-v21-6400-best', NULL, NULL, NULL,
     'Legacy SD 2.1 noggles fine-tune (Text to Image, Image to Image, ControlNet Outlines)'),
    ('alx-ai/sdxl-noggles-nowrong:9a487e8991d1d9a2ea46a3e4933cafff201f5512b037cc046ff1cce878b143ef', NULL,
     'alx-ai/sdxl-noggles-nowrong:9a487e8991d1d9a2ea46a3e4933cafff201f5512b037cc046ff1cce878b143ef',
     ARRAY['txt2img', 'img2img'],
     'Legacy SDXL noggles model on Replicate (Text to Image)'),
    ('timbrooks/instruct-pix2pix', NULL, NULL, NULL,
     'Legacy InstructPix2Pix (Pix to Pix)'),
    ('runwayml/stable-diffusion-v1-5', NULL, NULL, NULL,
     'Legacy SD 1.5 base for ControlNet Depth and Segmentation')
ON CONFLICT (model_id) DO NOTHING;

-- The legacy anonymous account (id 67, docs/legacy-contract.md §2): token-less POST
-- /images stores its images under it, and images.user_id references users.
-- Production already has the row (then nothing happens); a fresh database
-- gets a row nobody can log in as (the password is not a hash) and the id
-- sequence is moved past 67 so a signup never collides with it.
-- +goose StatementBegin
DO $$
DECLARE
    seq text := pg_get_serial_sequence('users', 'id');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = 67) THEN
        INSERT INTO users (id, email, password, is_verified, metadata)
        OVERRIDING SYSTEM VALUE
        VALUES (67, 'anonymous@nounsai.invalid', '!', true, '{"anonymous": true}')
        ON CONFLICT DO NOTHING;
        IF seq IS NOT NULL THEN
            PERFORM setval(seq, GREATEST(COALESCE(pg_sequence_last_value(seq::regclass), 0),
                                         (SELECT COALESCE(max(id), 0) FROM users), 67));
        END IF;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- The seeded rows stay: the legacy table may have held them before.
ALTER TABLE models DROP CONSTRAINT IF EXISTS models_backend_check;
ALTER TABLE models DROP COLUMN IF EXISTS updated_at;
ALTER TABLE models DROP COLUMN IF EXISTS enabled;
ALTER TABLE models DROP COLUMN IF EXISTS description;
ALTER TABLE models DROP COLUMN IF EXISTS capabilities;
ALTER TABLE models DROP COLUMN IF EXISTS backend_model;
ALTER TABLE models DROP COLUMN IF EXISTS backend;
