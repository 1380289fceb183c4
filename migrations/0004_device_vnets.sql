-- The virtual networks an enrolled device may use (`warp enroll --vnet`): its GUE datagrams and
-- its ip-packets streams naming another vnet are refused. A device with no rows may use every vnet.
CREATE TABLE device_vnets (
  device_id TEXT NOT NULL REFERENCES devices (id),
  vnet_id   TEXT NOT NULL REFERENCES vnets (id),
  PRIMARY KEY (device_id, vnet_id)
) WITHOUT ROWID;
