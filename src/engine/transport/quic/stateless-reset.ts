/**
 * Stateless reset (RFC 9000 §10.3): a restarted edge has lost its connections, and a
 * connector would otherwise keep sending into the void until its idle timeout (15 s).
 * Each connection ID the listener issues comes with a reset token, HMAC(key, CID), given
 * to the client in the handshake; a short-header packet for a CID the listener does not
 * know is answered with a packet that ends in that token, and the client closes at once.
 *
 * The key is derived from the edge's TLS private key, so a restarted edge (same identity)
 * computes the tokens its predecessor handed out, and nobody without the key can forge them.
 */
import { createHmac } from 'node:crypto';

export const RESET_TOKEN_LENGTH = 16;
/** RFC 9000 §10.3: a reset shorter than this is not recognisable; triggers up to 43 bytes get one byte less. */
const MIN_RESET_LENGTH = 21;
const MAX_RESET_LENGTH = 43;
/** Resets sent at most per second (the addon's ngtcp2 listener: kResetsPerSecond, the same). */
export const RESETS_PER_SECOND = 200;

export class StatelessResets {
  readonly #key: Buffer;
  #windowStart = 0;
  #sentInWindow = 0;

  /** `secret`: the edge's private key (PEM); `perSecond` bounds the resets sent. */
  constructor(
    secret: string | Buffer,
    private readonly perSecond = RESETS_PER_SECOND,
  ) {
    this.#key = createHmac('sha256', 'oxy quic stateless reset').update(secret).digest();
  }

  /** The HMAC key of the tokens (the addon's ngtcp2 server computes them itself). */
  get key(): Buffer {
    return this.#key;
  }

  token(cid: Uint8Array): Buffer {
    return createHmac('sha256', this.#key).update(cid).digest().subarray(0, RESET_TOKEN_LENGTH);
  }

  /** The token as quiche's transport parameter wants it (u128, big-endian bytes). */
  tokenValue(cid: Uint8Array): bigint {
    return BigInt(`0x${this.token(cid).toString('hex')}`);
  }

  /**
   * The reset for a short-header packet of `triggerLength` bytes addressed to `cid`, or
   * undefined when the trigger is too short to answer (loops end there) or the rate limit is hit.
   */
  packet(cid: Uint8Array, triggerLength: number, now = Date.now()): Buffer | undefined {
    const length = Math.min(triggerLength - 1, MAX_RESET_LENGTH);
    if (length < MIN_RESET_LENGTH) return undefined;
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#sentInWindow = 0;
    }
    if (++this.#sentInWindow > this.perSecond) return undefined;
    const out = Buffer.alloc(length);
    // Unpredictable bits, as a short header looks: form 0, fixed bit 1.
    createHmac('sha256', this.#key)
      .update('pad')
      .update(cid)
      .update(String(now))
      .digest()
      .copy(out, 0, 0, length - RESET_TOKEN_LENGTH);
    out[0] = 0x40 | (out[0]! & 0x3f);
    this.token(cid).copy(out, length - RESET_TOKEN_LENGTH);
    return out;
  }
}
