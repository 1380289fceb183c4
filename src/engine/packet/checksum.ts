/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Sums are kept "unfolded" (a plain JS number, exact below 2^53) while adding and folded to
 * 16 bits once at the end, so callers can chain sums over several ranges (pseudo-header,
 * header, payload) without folding in between.
 */

/**
 * One's-complement sum of the big-endian 16-bit words of `buf[start, end)`, added to
 * `initial`; an odd trailing byte counts as the high byte of a zero-padded word.
 * The result is unfolded: pass it to {@link foldSum} or {@link finishChecksum}.
 */
export function sumWords(buf: Uint8Array, start: number, end: number, initial = 0): number {
  if (end - start >= WIDE_SUM_THRESHOLD && ((buf.byteOffset + start) & 3) === 0 && LITTLE_ENDIAN) {
    return initial + sumWordsWide(buf, start, end);
  }
  // Sum high and low bytes separately: two adds per word instead of shift+or+add.
  let high = 0;
  let low = 0;
  let i = start;
  const evenEnd = end - ((end - start) & 1);
  const unrolledEnd = evenEnd - ((evenEnd - start) & 7);
  for (; i < unrolledEnd; i += 8) {
    high += buf[i] + buf[i + 2] + buf[i + 4] + buf[i + 6];
    low += buf[i + 1] + buf[i + 3] + buf[i + 5] + buf[i + 7];
  }
  for (; i < evenEnd; i += 2) {
    high += buf[i];
    low += buf[i + 1];
  }
  if (i < end) high += buf[i];
  return initial + high * 256 + low;
}

/** Below this many bytes a typed-array view costs more than it saves. */
const WIDE_SUM_THRESHOLD = 128;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Four bytes per step through a Uint32Array over the same memory. RFC 1071 §2 (B) and (C):
 * the sum is byte-order independent (add little-endian words, swap the folded result) and
 * can be taken 32 bits at a time (2^16 ≡ 1 mod 0xFFFF, so the high half folds in).
 */
function sumWordsWide(buf: Uint8Array, start: number, end: number): number {
  const quads = (end - start) >>> 2;
  const words = new Uint32Array(buf.buffer, buf.byteOffset + start, quads);
  // Two accumulators let the adds overlap; each stays exact (< 2^53) for any IP packet.
  let sumA = 0;
  let sumB = 0;
  let i = 0;
  for (const unrolledEnd = quads - (quads & 3); i < unrolledEnd; i += 4) {
    sumA += words[i] + words[i + 1];
    sumB += words[i + 2] + words[i + 3];
  }
  for (; i < quads; i++) sumA += words[i];
  const folded = foldSum(sumA + sumB);
  let tail = 0;
  for (i = start + quads * 4; i < end; i += 2) tail += (buf[i] << 8) | (i + 1 < end ? buf[i + 1] : 0);
  return (((folded & 0xff) << 8) | (folded >>> 8)) + tail;
}

/** Folds an unfolded sum to 16 bits with end-around carry (never complements). */
export function foldSum(sum: number): number {
  // Sums past 32 bits (never from one packet) need division to stay exact; others use shifts.
  if (sum > 0xffffffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  sum = (sum & 0xffff) + (sum >>> 16);
  return (sum & 0xffff) + (sum >>> 16);
}

/** The value to store in a checksum field for data whose unfolded sum is `sum`. */
export function finishChecksum(sum: number): number {
  return ~foldSum(sum) & 0xffff;
}

/** Internet checksum of `buf[start, end)`, ready to store in a checksum field. */
export function internetChecksum(buf: Uint8Array, start = 0, end = buf.length): number {
  return finishChecksum(sumWords(buf, start, end));
}

/**
 * Unfolded sum of a TCP/UDP/ICMPv6 pseudo-header (RFC 793, RFC 768, RFC 8200 §8.1).
 * `src`/`dst` are 4 or 16 bytes; for IPv6 the upper-layer length is 32 bits wide, which
 * adds the same to the sum as long as it fits 16 bits, so one formula serves both.
 */
export function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, protocol: number, upperLayerLength: number): number {
  const addresses = sumWords(dst, 0, dst.length, sumWords(src, 0, src.length));
  return addresses + protocol + (upperLayerLength >>> 16) + (upperLayerLength & 0xffff);
}

/**
 * Same as {@link pseudoHeaderSum} for addresses that sit next to each other inside a
 * packet (IPv4 bytes 12..19, IPv6 bytes 8..39), without making views.
 */
export function pseudoHeaderSumAt(buf: Uint8Array, addressesOffset: number, addressLength: number, protocol: number, upperLayerLength: number): number {
  const addresses = sumWords(buf, addressesOffset, addressesOffset + 2 * addressLength);
  return addresses + protocol + (upperLayerLength >>> 16) + (upperLayerLength & 0xffff);
}

/**
 * RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), where m and m' are the folded sums of the
 * old and new contents of the changed fields. Eqn. 3 (not eqn. 2) so a field that
 * becomes 0x0000/0xFFFF never leaves a checksum off by the one's-complement "-0".
 */
export function updateChecksum(checksum: number, oldFieldsSum: number, newFieldsSum: number): number {
  let sum = (~checksum & 0xffff) + (~foldSum(oldFieldsSum) & 0xffff) + foldSum(newFieldsSum);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Incremental update of a CHECKSUM_PARTIAL field (TUN with IFF_VNET_HDR and checksum
 * offload): the field holds the folded, not complemented, pseudo-header sum and the
 * device adds the rest. Only pseudo-header changes (addresses) go through here; port
 * changes are covered by the device's own sum. Same arithmetic as Linux's
 * inet_proto_csum_replace4() for partial checksums.
 */
export function updatePartialChecksum(partial: number, oldFieldsSum: number, newFieldsSum: number): number {
  let sum = partial + (~foldSum(oldFieldsSum) & 0xffff) + foldSum(newFieldsSum);
  sum = (sum & 0xffff) + (sum >>> 16);
  return (sum & 0xffff) + (sum >>> 16);
}
