-- Login tokens of the edge's web dashboard (`oxyctl edge dashboard-token`): only a SHA-256 of
-- each is kept (the token is 32 random bytes, so a plain hash cannot be reversed by guessing).
CREATE TABLE dashboard_tokens (
  id         TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
