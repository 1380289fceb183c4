/**
 * Registration of a connector connection with an edge, over the control stream:
 *
 *   edge      opens the control stream (request header kind `control`), sends `hello`
 *             with a fresh 32-byte nonce and its location;
 *   connector answers `register`: tunnel id, connector id, conn index, client version,
 *             features, and proof = HMAC-SHA256(tunnel secret, transcript);
 *   edge      looks the tunnel's secret up, verifies the proof and answers `registered`
 *             (connection UUID, location) — or `error` {OXY_ERR_TUNNEL_UNAUTHORIZED,
 *             "Unauthorized: Invalid tunnel secret"} and closes the connection with
 *             TunnelCloseCode.UNAUTHORIZED and the same text.
 *
 * The raw secret never crosses the wire. The transcript binds the proof to this nonce and
 * to the identity fields, so a captured proof is useless on another connection:
 *
 *   "oxy-register-v1" 0x00 | nonce (32) | u16 len + tunnelId | u16 len + connectorId | u32 connIndex
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { OxyError } from '../../core/errors.js';
import type { TunnelConnection, TunnelStream } from '../transport/types.js';
import { TunnelCloseCode } from './codes.js';
import { CONTROL_VERSION, ControlChannel, type RegisterMessage } from './control.js';
import { encodeRequestHeader, readStreamHeader } from './stream-header.js';

export const NONCE_SIZE = 32;
export const UNAUTHORIZED_MESSAGE = 'Unauthorized: Invalid tunnel secret';
const TRANSCRIPT_LABEL = Buffer.from('oxy-register-v1\0', 'latin1');
const DEFAULT_TIMEOUT_MS = 10_000;

/** The fields of a registration request that the proof covers (plus the nonce). */
export type RegistrationRequest = Pick<RegisterMessage, 'tunnelId' | 'connectorId' | 'connIndex'> & Partial<RegisterMessage>;

function transcript(request: Pick<RegisterMessage, 'tunnelId' | 'connectorId' | 'connIndex'>, nonce: Uint8Array): Buffer {
  const tunnel = Buffer.from(request.tunnelId, 'utf8');
  const connector = Buffer.from(request.connectorId, 'utf8');
  const out = Buffer.allocUnsafe(TRANSCRIPT_LABEL.length + nonce.length + 2 + tunnel.length + 2 + connector.length + 4);
  let off = TRANSCRIPT_LABEL.copy(out, 0);
  out.set(nonce, off);
  off += nonce.length;
  off = out.writeUInt16BE(tunnel.length, off);
  off += tunnel.copy(out, off);
  off = out.writeUInt16BE(connector.length, off);
  off += connector.copy(out, off);
  out.writeUInt32BE(request.connIndex >>> 0, off);
  return out;
}

/** base64 HMAC-SHA256(secret, transcript(request, nonce)). */
export function computeRegistrationProof(
  request: Pick<RegisterMessage, 'tunnelId' | 'connectorId' | 'connIndex'>,
  nonce: Uint8Array,
  secret: Uint8Array,
): string {
  return createHmac('sha256', secret).update(transcript(request, nonce)).digest('base64');
}

/**
 * Whether `request.proof` proves knowledge of `secret` for this nonce. Constant-time in the
 * proof bytes. The edge calls this with the secret it looked up for `request.tunnelId`.
 */
export function verifyRegistration(request: RegistrationRequest, nonce: Uint8Array, secret: Uint8Array): boolean {
  if (typeof request.proof !== 'string' || nonce.length !== NONCE_SIZE || secret.length === 0) return false;
  const expected = createHmac('sha256', secret).update(transcript(request, nonce)).digest();
  const given = Buffer.from(request.proof, 'base64');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

// ---------------------------------------------------------------------------- connector side

export interface ConnectorCredentials {
  tunnelId: string;
  /** The tunnel secret (raw bytes, as decoded from the credentials file's TunnelSecret). */
  secret: Uint8Array;
  connectorId: string;
  connIndex: number;
  clientVersion: string;
  features?: string[];
}

export interface Registered {
  control: ControlChannel;
  connectionId: string;
  location: string;
}

/**
 * Connector side: accept the edge's control stream on `conn`, prove the secret, and wait
 * for the verdict. Rejects with the edge's error code (OXY_ERR_TUNNEL_UNAUTHORIZED with
 * "Unauthorized: Invalid tunnel secret") or a protocol/timeout error. Does not close `conn`
 * on failure (the edge does; the caller may also).
 */
export async function registerConnection(conn: TunnelConnection, credentials: ConnectorCredentials, options: { timeoutMs?: number } = {}): Promise<Registered> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  const stream = await conn.acceptStream({ timeoutMs: left() });
  const header = await readStreamHeader(stream, { expect: 'request', timeoutMs: left() });
  if (header.kind !== 'control') {
    stream.destroy();
    throw new OxyError('OXY_ERR_PROTOCOL_UNEXPECTED_MESSAGE', `Expected the control stream first, got a '${header.kind}' stream`);
  }
  const control = new ControlChannel(stream);
  const hello = await control.expect('hello', left());
  if (hello.version !== CONTROL_VERSION) {
    throw new OxyError('OXY_ERR_PROTOCOL_UNSUPPORTED_VERSION', `Edge speaks control version ${hello.version}`);
  }
  const nonce = Buffer.from(hello.nonce, 'base64');
  const ids = { tunnelId: credentials.tunnelId, connectorId: credentials.connectorId, connIndex: credentials.connIndex };
  await control.send({
    type: 'register',
    version: CONTROL_VERSION,
    ...ids,
    clientVersion: credentials.clientVersion,
    features: credentials.features ?? [],
    proof: computeRegistrationProof(ids, nonce, credentials.secret),
  });
  let answer;
  try {
    answer = await control.expect('registered', left());
  } catch (err) {
    // The edge closes right after its `error` message; if the close won the race, its
    // reason carries the same verdict.
    if (conn.isClosed && !(err instanceof OxyError && err.code === 'OXY_ERR_TUNNEL_UNAUTHORIZED')) {
      const info = await conn.closed;
      if (info.remote && info.code === TunnelCloseCode.UNAUTHORIZED) {
        throw new OxyError('OXY_ERR_TUNNEL_UNAUTHORIZED', info.reason || UNAUTHORIZED_MESSAGE, { cause: err });
      }
    }
    throw err;
  }
  return { control, connectionId: answer.connectionId, location: answer.location };
}

// ---------------------------------------------------------------------------- edge side

export interface AcceptRegistrationOptions {
  /** The tunnel's secret, or undefined when no such tunnel (answered as unauthorized). */
  lookupSecret: (tunnelId: string) => Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /** This edge's location name, sent in hello and registered. */
  location: string;
  timeoutMs?: number;
  /** Connection UUID to hand out. Default: a random UUID. */
  connectionId?: string;
}

export interface AcceptedRegistration extends Registered {
  request: RegisterMessage;
  stream: TunnelStream;
}

/**
 * Edge side: open the control stream on `conn`, challenge, verify with the looked-up
 * secret. On success the connector has been told `registered`. On failure the connector
 * gets an `error` message, `conn` is closed with the code's close code and reason, and this
 * rejects with the same OxyError code.
 */
export async function acceptRegistration(conn: TunnelConnection, options: AcceptRegistrationOptions): Promise<AcceptedRegistration> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const stream = await conn.openStream();
  stream.write(encodeRequestHeader({ kind: 'control', destination: '', metadata: [] }));
  const control = new ControlChannel(stream);
  const nonce = randomBytes(NONCE_SIZE);
  try {
    await control.send({ type: 'hello', version: CONTROL_VERSION, nonce: nonce.toString('base64'), location: options.location });
    const request = await control.expect('register', timeoutMs);
    const secret = await options.lookupSecret(request.tunnelId);
    if (!secret || !verifyRegistration(request, nonce, secret)) {
      await refuse(conn, control, TunnelCloseCode.UNAUTHORIZED, 'OXY_ERR_TUNNEL_UNAUTHORIZED', UNAUTHORIZED_MESSAGE);
      throw new OxyError('OXY_ERR_TUNNEL_UNAUTHORIZED', UNAUTHORIZED_MESSAGE);
    }
    const connectionId = options.connectionId ?? randomUUID();
    await control.send({ type: 'registered', connectionId, location: options.location });
    return { control, connectionId, location: options.location, request, stream };
  } catch (err) {
    if (!conn.isClosed) {
      const timeout = err instanceof OxyError && err.code === 'OXY_ERR_PROTOCOL_TIMEOUT';
      const code = timeout ? TunnelCloseCode.REGISTRATION_TIMEOUT : TunnelCloseCode.PROTOCOL_ERROR;
      const message = err instanceof Error ? err.message : String(err);
      await refuse(conn, control, code, err instanceof OxyError ? err.code : 'OXY_ERR_PROTOCOL_MALFORMED', message);
    }
    throw err;
  }
}

async function refuse(conn: TunnelConnection, control: ControlChannel, closeCode: number, code: string, message: string): Promise<void> {
  if (control.isOpen) {
    await control.send({ type: 'error', code, message, retryable: false }).catch(() => undefined);
  }
  conn.close(closeCode, message);
}
