/**
 * Numeric close codes carried in QUIC CONNECTION_CLOSE / HTTP/2 GOAWAY. 0 is a normal
 * close; 0x100 and up are oxy application codes; below that, transport-level faults.
 */
export const TunnelCloseCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  /** The transport died under us (socket error, TLS failure): no close frame was seen. */
  TRANSPORT_LOST: 0xff,
  UNAUTHORIZED: 0x101,
  /** Graceful shutdown after a drain. */
  SHUTDOWN: 0x102,
  REGISTRATION_TIMEOUT: 0x103,
} as const;
