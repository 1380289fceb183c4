-- PostgreSQL twin of ../0006_edge_groups.sql. The edge process group each edges row belongs to:
-- `edge run --workers N` records one row per worker, all naming the same group (an id the
-- primary makes); a single-process edge names its own id. `oxyctl edge list` shows one row per
-- group. Rows written before this have no group and stay one row each.
ALTER TABLE edges ADD COLUMN group_id TEXT;
