-- api_hosts becomes the proxy's GPU host registry. The legacy table holds only
-- (id, address); every added column is optional with a default, so
-- `INSERT INTO api_hosts (address) VALUES ('http://10.0.0.7:5000')` is enough.
-- A statement-level trigger NOTIFYs api_hosts_changed so proxies reload within
-- a second; the payload is empty (proxies reload the whole table).

-- +goose Up
ALTER TABLE api_hosts ADD COLUMN IF NOT EXISTS enabled BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE api_hosts ADD COLUMN IF NOT EXISTS weight REAL NOT NULL DEFAULT 1;
ALTER TABLE api_hosts ADD COLUMN IF NOT EXISTS draining BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE api_hosts ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now();

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'api_hosts'::regclass AND conname = 'api_hosts_weight_check') THEN
        ALTER TABLE api_hosts ADD CONSTRAINT api_hosts_weight_check CHECK (weight >= 0 AND weight <= 1000);
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION api_hosts_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('api_hosts_changed', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd

DROP TRIGGER IF EXISTS api_hosts_notify ON api_hosts;
CREATE TRIGGER api_hosts_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_hosts
    FOR EACH STATEMENT EXECUTE FUNCTION api_hosts_notify();

-- +goose Down
DROP TRIGGER IF EXISTS api_hosts_notify ON api_hosts;
DROP FUNCTION IF EXISTS api_hosts_notify();
ALTER TABLE api_hosts DROP CONSTRAINT IF EXISTS api_hosts_weight_check;
ALTER TABLE api_hosts DROP COLUMN IF EXISTS created_at;
ALTER TABLE api_hosts DROP COLUMN IF EXISTS draining;
ALTER TABLE api_hosts DROP COLUMN IF EXISTS weight;
ALTER TABLE api_hosts DROP COLUMN IF EXISTS enabled;
