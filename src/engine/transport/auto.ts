/**
 * `--protocol auto`, as cloudflared does it: dial QUIC first; when the QUIC handshake times
 * out, UDP to the edge is refused, or the edge does not speak our QUIC ALPN, log why and
 * dial HTTP/2 instead. A certificate or pin failure is not a reason to fall back (HTTP/2
 * would meet the same edge identity): it is thrown. With a shared `state`, the choice
 * sticks: once QUIC failed, later dials (reconnects, the other HA connections) go straight
 * to HTTP/2 until `retryQuicAfterMs` has passed.
 */
import { isOxyError } from '../../core/errors.js';
import type { TunnelConnection, TunnelProtocol } from './types.js';

/** The part of a pino logger dialAuto uses. */
export interface AutoDialLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/** Shared between dials (one per connector) so a fallback sticks. */
export interface AutoProtocolState {
  /** Set when QUIC failed and HTTP/2 is being used; when (ms since epoch). */
  fellBackAt?: number;
  /** Why QUIC was given up, for logs and `tunnel info`. */
  reason?: string;
}

export interface DialAutoOptions {
  /** Dial QUIC; must give up after `timeoutMs` (dialQuic's handshake timeout). */
  quic: (options: { timeoutMs: number; signal?: AbortSignal }) => Promise<TunnelConnection>;
  http2: (options: { signal?: AbortSignal }) => Promise<TunnelConnection>;
  log?: AutoDialLog;
  /** How long the QUIC handshake may take before falling back. Default 5 s. */
  quicTimeoutMs?: number;
  signal?: AbortSignal;
  state?: AutoProtocolState;
  /** After a fallback, try QUIC again on dials this long after it. Default 10 min; 0 never. */
  retryQuicAfterMs?: number;
  /** Extra log fields (connIndex, …). */
  fields?: Record<string, unknown>;
}

export const DEFAULT_QUIC_TIMEOUT_MS = 5_000;
const DEFAULT_RETRY_QUIC_AFTER_MS = 10 * 60_000;

/** Failures after which HTTP/2 is tried. Everything else is thrown as is. */
export function shouldFallBack(err: unknown): boolean {
  if (isOxyError(err, 'OXY_ERR_ABORTED') || isOxyError(err, 'OXY_ERR_TUNNEL_PIN_MISMATCH')) return false;
  const failure = (err as { failure?: string } | null)?.failure;
  if (failure !== undefined) return failure === 'timeout' || failure === 'unreachable' || failure === 'refused' || failure === 'closed';
  // Not a QUIC dial error (socket creation failed, …): UDP is unusable here.
  return !isOxyError(err, 'OXY_ERR_TUNNEL_HANDSHAKE');
}

export async function dialAuto(options: DialAutoOptions): Promise<TunnelConnection & { protocol: TunnelProtocol }> {
  const state = options.state;
  const fields = options.fields ?? {};
  const retryAfter = options.retryQuicAfterMs ?? DEFAULT_RETRY_QUIC_AFTER_MS;
  const stuck = state?.fellBackAt !== undefined && (retryAfter === 0 || Date.now() - state.fellBackAt < retryAfter);
  if (!stuck) {
    const timeoutMs = options.quicTimeoutMs ?? DEFAULT_QUIC_TIMEOUT_MS;
    try {
      const conn = await options.quic({ timeoutMs, signal: options.signal });
      if (state?.fellBackAt !== undefined) {
        options.log?.info({ ...fields, protocol: 'quic' }, 'QUIC works again; leaving the fallback protocol');
        state.fellBackAt = undefined;
        state.reason = undefined;
      }
      return conn;
    } catch (err) {
      if (!shouldFallBack(err)) throw err;
      const reason = (err as Error).message;
      options.log?.warn({ ...fields, error: reason }, 'Failed to dial a quic connection');
      options.log?.info({ ...fields, protocol: 'http2' }, 'Switching to fallback protocol http2');
      if (state) {
        state.fellBackAt = Date.now();
        state.reason = reason;
      }
    }
  }
  return options.http2({ signal: options.signal });
}
