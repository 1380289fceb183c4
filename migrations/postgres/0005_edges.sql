-- PostgreSQL twin of ../0005_edges.sql. Edges sharing this store (`oxyctl edge list`): each running edge records itself and renews
-- a heartbeat; the connections it holds carry its id, so once its heartbeat is stale (it
-- died) they drop out of `tunnel list` / `tunnel info`. Times are RFC 3339 with milliseconds
-- (they compare as text). Rows written before this migration have no edge_id and stay shown.
CREATE TABLE edges (
  id             TEXT PRIMARY KEY,
  location       TEXT NOT NULL,
  tunnel_address TEXT NOT NULL,
  started_at     TEXT NOT NULL,
  heartbeat_at   TEXT NOT NULL
);
CREATE INDEX edges_heartbeat ON edges (heartbeat_at);
ALTER TABLE tunnel_connections ADD COLUMN edge_id TEXT;
CREATE INDEX tunnel_connections_edge ON tunnel_connections (edge_id);
