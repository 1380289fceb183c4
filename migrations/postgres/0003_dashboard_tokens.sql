-- PostgreSQL twin of ../0003_dashboard_tokens.sql.
CREATE TABLE dashboard_tokens (
  id         TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
