-- Devices enrolled to reach private networks from another host (`oxyctl warp enroll`):
-- each registers with the edge like a connector, proving its own secret.
CREATE TABLE devices (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL CHECK (length(name) > 0),
  secret     TEXT NOT NULL,
  created_at TEXT NOT NULL,
  deleted_at TEXT
);
CREATE UNIQUE INDEX devices_live_name ON devices (name) WHERE deleted_at IS NULL;
