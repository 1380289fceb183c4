/**
 * QUIC dial errors, transport error and TLS alert names, and the edge certificate checks the TLS
 * stack leaves to us — the same for quiche (./connection.ts) and ngtcp2 (./ngtcp2-connection.ts).
 */
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { OxyError, type ErrorCode } from '../../../core/errors.js';
import { spkiPin } from '../identity.js';

/** Transport error codes 0x100–0x1ff carry a TLS alert (RFC 9001 §4.8). */
export const CRYPTO_ERROR_START = 0x100;
export const CRYPTO_ERROR_STOP = 0x1ff;

/** Why a dial failed, for `--protocol auto` (fall back to HTTP/2 on timeout/unreachable). */
export type QuicDialFailure = 'timeout' | 'unreachable' | 'tls' | 'refused' | 'aborted' | 'closed';

export class QuicDialError extends OxyError {
  readonly failure: QuicDialFailure;

  constructor(code: ErrorCode, failure: QuicDialFailure, message: string, cause?: unknown) {
    super(code, message, { cause });
    this.name = 'QuicDialError';
    this.failure = failure;
  }
}

export interface ClientVerification {
  /** The dialed IP when no DNS name was given: checked against the certificate's IP SANs. */
  ip?: string;
  /** base64 SHA-256 of the SPKI of a CA that must sign the edge certificate (chain walk). */
  caPin?: string;
  /** Trusted CA PEMs: parents for the pin walk when the edge does not send its CA. */
  ca: string[];
}

const TRANSPORT_ERRORS: Record<number, string> = {
  0x0: 'no error',
  0x1: 'internal error',
  0x2: 'connection refused',
  0x3: 'flow control error',
  0x4: 'stream limit error',
  0x5: 'stream state error',
  0x6: 'final size error',
  0x7: 'frame encoding error',
  0x8: 'transport parameter error',
  0x9: 'connection id limit error',
  0xa: 'protocol violation',
  0xb: 'invalid token',
  0xc: 'application error',
  0xd: 'crypto buffer exceeded',
  0xe: 'key update error',
  0xf: 'AEAD limit reached',
  0x10: 'no viable path',
};

const TLS_ALERTS: Record<number, string> = {
  40: 'handshake failure',
  42: 'bad certificate',
  43: 'unsupported certificate',
  45: 'certificate expired',
  46: 'certificate unknown',
  48: 'unknown CA',
  80: 'internal error',
  120: 'no application protocol',
};

export function describeTransportError(code: number): string {
  if (code >= CRYPTO_ERROR_START && code <= CRYPTO_ERROR_STOP) {
    const alert = code - CRYPTO_ERROR_START;
    return `TLS alert ${alert}${TLS_ALERTS[alert] ? ` (${TLS_ALERTS[alert]})` : ''}`;
  }
  return TRANSPORT_ERRORS[code] ?? `transport error 0x${code.toString(16)}`;
}

/**
 * Checks the TLS stack leaves to us (BoringSSL for quiche, GnuTLS for ngtcp2): the certificate's IP SAN when dialing an IP (no SNI to
 * check a name against), and the CA pin by walking signatures from the leaf up through
 * the presented chain and the trusted CAs. A "pin:" prefix marks a pin mismatch.
 */
export function verifyEdgeChain(presented: readonly Uint8Array[], verify: ClientVerification): string | undefined {
  const chain = presented.map((der) => new X509Certificate(Buffer.from(der)));
  const leaf = chain[0];
  if (!leaf) return 'the edge presented no certificate';
  if (verify.ip !== undefined && isIP(verify.ip) !== 0 && leaf.checkIP(verify.ip) === undefined) {
    return `the edge certificate is not valid for ${verify.ip}`;
  }
  if (verify.caPin !== undefined) {
    const candidates = [...chain.slice(1), ...verify.ca.map((pem) => new X509Certificate(pem))];
    let current: X509Certificate | undefined = leaf;
    for (let depth = 0; current && depth < 8; depth++) {
      if (spkiPin(current.publicKey.export({ type: 'spki', format: 'der' })) === verify.caPin) return undefined;
      const child: X509Certificate = current;
      current = candidates.find((c) => c !== child && child.checkIssued(c) && child.verify(c.publicKey));
    }
    return 'pin:the edge certificate is not signed by a CA whose public key matches the configured pin';
  }
  return undefined;
}
