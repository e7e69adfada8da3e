-- Rows in every legacy table, shaped like production data. Ids come from the
-- identity columns of a fresh database, so user 1 is alice, image 1 her first
-- image, and so on.

INSERT INTO users (email, password, is_verified, verify_key, referral_token, metadata, created_at) VALUES
    ('alice@example.com', '$5$rounds=535000$AbCdEfGhIjKlMnOp$q1w2e3r4t5y6u7i8o9p0asdfghjklzxcvbnmQWERTYU', TRUE, NULL, 'ref-alice-7f3a', '{"rewards_referral_verify": true, "theme": "dark"}', '2023-03-01 10:00:00.123456'),
    ('Bob.Smith@Example.org', '$5$rounds=535000$ZyXwVuTsRqPoNmLk$plaintext?no', FALSE, 'verify-9c1d2e', NULL, '{}', '2023-03-02 11:30:00'),
    ('zoë@例え.jp', 'x', FALSE, NULL, NULL, '{"nested": {"a": [1, 2.5, null, "ünï"]}, "emoji": "🎨"}', DEFAULT);

INSERT INTO password_recovery (user_id, reset_key, created_at) VALUES
    (2, 'reset-5d6e7f', '2023-04-01 08:00:00'),
    (2, NULL, DEFAULT);

INSERT INTO images (user_id, base_64, thumb_base_64, hash, metadata, cdn_id, is_public, is_liked, parent_id, created_at, updated_at) VALUES
    (1, '0', '0', 'a3f1c2e4b5d6978812ab34cd56ef7890a3f1c2e4b5d6978812ab34cd56ef7890',
     '{"inference_mode": "Text to Image", "prompt": "a noun with glasses", "steps": 25, "seed": 42, "aspect_ratio": "1:1"}',
     '3f2504e0-4f89-11d3-9a0c-0305e82c3301', TRUE, FALSE, NULL, '2023-05-01 12:00:00', '2023-05-02 12:00:00'),
    (1, 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'iVBORw0KGgo=',
     'b3f1c2e4', '{"upload": true}', NULL, FALSE, TRUE, 1, DEFAULT, DEFAULT),
    (2, '0', '0', 'c0ffee', '{}', '6fa459ea-ee8a-3ca4-894e-db77e160355e', FALSE, FALSE, NULL, DEFAULT, DEFAULT);

INSERT INTO audio (user_id, name, cdn_id, size, metadata, created_at, updated_at, state) VALUES
    (1, 'song.mp3', 'song.mp3b1946ac9-2b5d-4f0c-9d1e-000000000001', 5242880, '{"bpm": 120}', '2023-06-01 09:00:00', '2023-06-01 09:05:00', 'COMPLETED'),
    (1, 'song.mp3', 'song.mp3b1946ac9-2b5d-4f0c-9d1e-000000000002', 0, '{}', DEFAULT, DEFAULT, NULL),
    (2, 'melody.wav', 'melody.wavb1946ac9-2b5d-4f0c-9d1e-000000000003', 1024, '{"mode": "melody to audio", "parent_id": 1}', DEFAULT, DEFAULT, DEFAULT);

INSERT INTO videos (user_id, metadata, created_at, updated_at, cdn_id, start_frame_id, end_frame_id, start_frame_cdn_id, end_frame_cdn_id, duration, name) VALUES
    (1, '{"fps": 24}', '2023-07-01 10:00:00', '2023-07-01 10:00:00', '9b2f1e1a-0000-4000-8000-000000000001', 1, 2, '3f2504e0-4f89-11d3-9a0c-0305e82c3301', NULL, 4, 'clip.mp4'),
    (2, '{}', DEFAULT, DEFAULT, NULL, 3, 3, NULL, NULL, 0, NULL);

INSERT INTO links (user_id, metadata, created_at, updated_at) VALUES
    (1, '{"url": "https://nounsai.wtf/s/abc", "images": [1, 2]}', '2023-08-01 00:00:00', '2023-08-01 00:00:00'),
    (2, '{}', DEFAULT, DEFAULT);

INSERT INTO models (model_id, created_at) VALUES
    ('nouns/stable-diffusion-v1', '2023-01-01 00:00:00'),
    ('runwayml/stable-diffusion-v1-5', DEFAULT);

INSERT INTO api_hosts (address) VALUES
    ('http://10.0.0.5:5000'),
    ('https://gpu-2.nounsai.wtf');

INSERT INTO referrals (referrer_id, referred_id, metadata, created_at, updated_at) VALUES
    (1, 2, '{}', '2023-03-02 11:30:01', '2023-03-02 11:30:01');

-- The seeded reward of migrations/referral_reward.py: psycopg2 SQL run with
-- the verified user's id as its only parameter.
INSERT INTO rewards (name, sql, metadata) VALUES
    ('referral_verify', E'SELECT\n    CASE WHEN is_verified THEN 100 ELSE 0 END AS amount,\n    CASE WHEN is_verified THEN 30 ELSE 0 END AS expires_at,\n    is_verified AS complete\nFROM users\nWHERE id = %s;', '{}');

INSERT INTO transactions (metadata, created_at, updated_at, expires_at, user_id, type, amount, amount_remaining, memo) VALUES
    ('{}', '2023-03-02 11:31:00', '2023-03-02 11:31:00', '2023-04-01 11:31:00', 1, 'credit', 100, 40, 'rewards_referral_verify'),
    ('{"image_id": 1}', DEFAULT, DEFAULT, NULL, 1, 'debit', 10, 0, 'generation'),
    ('{}', DEFAULT, DEFAULT, NULL, 2, 'credit', 50, 50, 'signup_bonus');

INSERT INTO video_projects (user_id, audio_id, metadata, created_at, updated_at, state, cdn_id) VALUES
    (1, 1, '{"imageIds": [1, 2], "fps": 12}', '2023-09-01 00:00:00', '2023-09-02 00:00:00', 'COMPLETED', '7c9e6679-7425-40de-944b-e07fc1f90ae7'),
    (1, 2, '{}', DEFAULT, DEFAULT, DEFAULT, NULL),
    (2, 3, '{}', DEFAULT, DEFAULT, 'QUEUED', NULL);
