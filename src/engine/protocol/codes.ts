/**
 * Stable error codes of the tunnel protocol and transports. Callers branch on these
 * (`isOxyError(err, ProtocolErrorCode.OVERSIZE)`), never on message text.
 */
export const ProtocolErrorCode = {
  /** The first bytes are not the protocol magic: not an oxy tunnel peer, or garbage. */
  BAD_MAGIC: 'OXY_ERR_PROTOCOL_BAD_MAGIC',
  /** A version this build does not speak. */
  UNSUPPORTED_VERSION: 'OXY_ERR_PROTOCOL_UNSUPPORTED_VERSION',
  /** A declared length above the limit; refused before the payload is read. */
  OVERSIZE: 'OXY_ERR_PROTOCOL_OVERSIZE',
  /** The frame is structurally wrong (bad type, bad lengths, bad UTF-8/JSON, missing fields). */
  MALFORMED: 'OXY_ERR_PROTOCOL_MALFORMED',
  /** The stream ended in the middle of a frame. */
  TRUNCATED: 'OXY_ERR_PROTOCOL_TRUNCATED',
  /** A message that is valid but not expected in this state (e.g. `registered` before `register`). */
  UNEXPECTED: 'OXY_ERR_PROTOCOL_UNEXPECTED_MESSAGE',
  /** A peer did not answer in time. */
  TIMEOUT: 'OXY_ERR_PROTOCOL_TIMEOUT',
} as const;

export const TunnelErrorCode = {
  /** The registration proof did not verify against the tunnel's secret, or no such tunnel. */
  UNAUTHORIZED: 'OXY_ERR_TUNNEL_UNAUTHORIZED',
  /** The connection closed (locally or by the peer); the close info is in `cause`. */
  CLOSED: 'OXY_ERR_TUNNEL_CLOSED',
  /** The peer announced a drain: no new streams toward it. */
  DRAINING: 'OXY_ERR_TUNNEL_DRAINING',
  /** The peer reset the stream, or the stream was destroyed before it ended cleanly. */
  STREAM_RESET: 'OXY_ERR_STREAM_RESET',
  /** TLS or ALPN failed while dialing or accepting. */
  HANDSHAKE: 'OXY_ERR_TUNNEL_HANDSHAKE',
  /** The edge's CA public key does not match the configured pin. */
  PIN_MISMATCH: 'OXY_ERR_TUNNEL_PIN_MISMATCH',
  /** The operation was aborted by its AbortSignal. */
  ABORTED: 'OXY_ERR_ABORTED',
} as const;

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
