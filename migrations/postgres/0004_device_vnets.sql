-- PostgreSQL twin of ../0004_device_vnets.sql.
CREATE TABLE device_vnets (
  device_id TEXT NOT NULL REFERENCES devices (id),
  vnet_id   TEXT NOT NULL REFERENCES vnets (id),
  PRIMARY KEY (device_id, vnet_id)
);
