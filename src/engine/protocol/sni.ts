/**
 * The server name (SNI) of a TLS ClientHello, read from the first bytes a client sends
 * (one record; a ClientHello split over records or segments yields undefined). Every
 * length is checked against the bytes present before it is followed.
 */
export function parseSni(buf: Buffer): string | undefined {
  // TLS record: type 22 (handshake), version, length; handshake type 1 (ClientHello).
  if (buf.length < 9 || buf[0] !== 0x16 || buf[5] !== 0x01) return undefined;
  const end = Math.min(buf.length, 5 + buf.readUInt16BE(3));
  let at = 9 + 2 + 32; // handshake header, client version, random
  if (at + 1 > end) return undefined;
  at += 1 + buf[at]; // session id
  if (at + 2 > end) return undefined;
  at += 2 + buf.readUInt16BE(at); // cipher suites
  if (at + 1 > end) return undefined;
  at += 1 + buf[at]; // compression methods
  if (at + 2 > end) return undefined;
  const extEnd = Math.min(end, at + 2 + buf.readUInt16BE(at));
  at += 2;
  while (at + 4 <= extEnd) {
    const type = buf.readUInt16BE(at);
    const len = buf.readUInt16BE(at + 2);
    at += 4;
    if (at + len > extEnd) return undefined;
    if (type === 0 && len >= 5 && buf[at + 2] === 0) {
      const nameLen = buf.readUInt16BE(at + 3);
      if (at + 5 + nameLen > at + len) return undefined;
      return buf.toString('ascii', at + 5, at + 5 + nameLen);
    }
    at += len;
  }
  return undefined;
}
