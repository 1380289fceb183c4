-- The control-plane schema: one account per store, vnets, tunnels, their live
-- connections, IP routes and public hostnames. Rows are soft-deleted (deleted_at) so
-- `--show-deleted` can list them; every uniqueness rule below applies to live rows only.

CREATE TABLE account (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  account_tag TEXT NOT NULL
);

CREATE TABLE vnets (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL CHECK (length(name) > 0),
  comment    TEXT NOT NULL DEFAULT '',
  is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
  created_at TEXT NOT NULL,
  deleted_at TEXT,
  CHECK (deleted_at IS NULL OR is_default = 0)
);
CREATE UNIQUE INDEX vnets_live_name ON vnets (name) WHERE deleted_at IS NULL;
-- At most one default: a second writer racing to set another default fails here.
CREATE UNIQUE INDEX vnets_one_default ON vnets (is_default) WHERE is_default = 1;

CREATE TABLE tunnels (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL CHECK (length(name) > 0),
  secret     TEXT NOT NULL,
  created_at TEXT NOT NULL,
  deleted_at TEXT
);
CREATE UNIQUE INDEX tunnels_live_name ON tunnels (name) WHERE deleted_at IS NULL;

-- Connections the edge records while connectors are registered; `tunnel cleanup` forgets them.
CREATE TABLE tunnel_connections (
  id             TEXT PRIMARY KEY,
  tunnel_id      TEXT NOT NULL REFERENCES tunnels (id),
  connector_id   TEXT NOT NULL,
  conn_index     INTEGER NOT NULL,
  protocol       TEXT NOT NULL,
  origin_ip      TEXT NOT NULL,
  edge_location  TEXT NOT NULL,
  client_version TEXT NOT NULL DEFAULT '',
  arch           TEXT NOT NULL DEFAULT '',
  opened_at      TEXT NOT NULL
);
CREATE INDEX tunnel_connections_tunnel ON tunnel_connections (tunnel_id);

-- Routes keep their network both as canonical text and as a big-endian address range
-- (range_start..range_end, 4 or 16 bytes) so that subset/superset filters and the
-- longest-prefix lookup are index range scans.
CREATE TABLE routes (
  id          TEXT PRIMARY KEY,
  vnet_id     TEXT NOT NULL REFERENCES vnets (id),
  tunnel_id   TEXT NOT NULL REFERENCES tunnels (id),
  network     TEXT NOT NULL,
  family      INTEGER NOT NULL CHECK (family IN (4, 6)),
  prefix_len  INTEGER NOT NULL,
  range_start BLOB NOT NULL,
  range_end   BLOB NOT NULL,
  comment     TEXT NOT NULL DEFAULT '',
  created_at  TEXT NOT NULL,
  deleted_at  TEXT
);
-- cloudflared's error 1014: the same network twice in one vnet.
CREATE UNIQUE INDEX routes_live_network ON routes (vnet_id, network) WHERE deleted_at IS NULL;
CREATE INDEX routes_lookup ON routes (vnet_id, family, range_start) WHERE deleted_at IS NULL;
CREATE INDEX routes_tunnel ON routes (tunnel_id) WHERE deleted_at IS NULL;

-- Public hostnames (`tunnel route dns`): the edge's HTTP on-ramp routes by Host.
CREATE TABLE hostnames (
  id         TEXT PRIMARY KEY,
  hostname   TEXT NOT NULL,
  tunnel_id  TEXT NOT NULL REFERENCES tunnels (id),
  created_at TEXT NOT NULL,
  deleted_at TEXT
);
CREATE UNIQUE INDEX hostnames_live ON hostnames (hostname) WHERE deleted_at IS NULL;
