/**
 * Stateless retry tokens (RFC 9000 §8.1.2). The listener answers a client's first Initial
 * with a Retry carrying a token; only a client that receives at the address it claims can
 * echo it back, and only then does the listener allocate connection state. The token is
 *
 *   [u32 BE issued-at seconds][u8 odcid length][odcid][16-byte HMAC-SHA256 prefix]
 *
 * where the MAC covers the issue time, the original destination CID and the client's
 * address. Nothing is stored: the key is per listener and random. The addon's ngtcp2 server
 * (native/cpp/quicserver.cc) mints and checks the same format with `key`.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The MAC's bytes in a token (the addon's ngtcp2 listener: kMacLength, the same). */
export const MAC_LENGTH = 16;

export class RetryTokens {
  readonly key = randomBytes(32);

  constructor(readonly lifetimeMs = 10_000) {}

  mint(odcid: Uint8Array, clientAddress: string, now = Date.now()): Buffer {
    const issued = Math.floor(now / 1000);
    const body = Buffer.allocUnsafe(5 + odcid.length);
    body.writeUInt32BE(issued >>> 0, 0);
    body[4] = odcid.length;
    body.set(odcid, 5);
    return Buffer.concat([body, this.mac(body, clientAddress)]);
  }

  /** The original destination CID when the token is ours, fresh and for this address. */
  validate(token: Uint8Array, clientAddress: string, now = Date.now()): Buffer | undefined {
    const buf = Buffer.from(token.buffer, token.byteOffset, token.byteLength);
    if (buf.length < 5 + MAC_LENGTH) return undefined;
    const odcidLength = buf[4]!;
    if (buf.length !== 5 + odcidLength + MAC_LENGTH) return undefined;
    const body = buf.subarray(0, 5 + odcidLength);
    if (!timingSafeEqual(buf.subarray(5 + odcidLength), this.mac(body, clientAddress))) return undefined;
    const ageMs = now - buf.readUInt32BE(0) * 1000;
    if (ageMs < -1000 || ageMs > this.lifetimeMs) return undefined;
    return Buffer.from(body.subarray(5));
  }

  private mac(body: Buffer, clientAddress: string): Buffer {
    return createHmac('sha256', this.key).update(body).update(clientAddress).digest().subarray(0, MAC_LENGTH);
  }
}
