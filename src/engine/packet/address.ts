/**
 * Address helpers for logs, tests and configuration. The hot path never formats: it
 * passes 4- or 16-byte Buffers around; these turn them into text and back.
 */

/** Formats 4 or 16 bytes at `offset` as dotted-quad IPv4 or RFC 5952 IPv6 text. */
export function formatAddress(bytes: Uint8Array, offset = 0, length = bytes.length - offset): string {
  if (length === 4) {
    return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  }
  if (length !== 16 || offset + 16 > bytes.length) {
    throw new RangeError(`an IP address is 4 or 16 bytes, got ${length}`);
  }
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((bytes[offset + 2 * i] << 8) | bytes[offset + 2 * i + 1]);

  // RFC 5952 §5: IPv4-mapped addresses keep the dotted quad.
  if (words[0] === 0 && words[1] === 0 && words[2] === 0 && words[3] === 0 && words[4] === 0 && words[5] === 0xffff) {
    return `::ffff:${formatAddress(bytes, offset + 12, 4)}`;
  }

  // RFC 5952 §4.2: compress the longest run (first on a tie) of two or more zero words.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string =>
    words
      .slice(from, to)
      .map((w) => w.toString(16))
      .join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** Formats an address with a port: `198.18.0.1:80`, `[2001:db8::1]:80`. */
export function formatEndpoint(bytes: Uint8Array, port: number, offset = 0, length = bytes.length - offset): string {
  const address = formatAddress(bytes, offset, length);
  return length === 16 ? `[${address}]:${port}` : `${address}:${port}`;
}

const IPV4_TEXT = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses IPv4 or IPv6 text into a new 4- or 16-byte Buffer; throws RangeError on bad text. */
export function parseAddress(text: string): Buffer {
  const v4 = parseIpv4(text);
  if (v4) return v4;
  const v6 = parseIpv6(text);
  if (v6) return v6;
  throw new RangeError(`not an IP address: ${JSON.stringify(text)}`);
}

function parseIpv4(text: string): Buffer | undefined {
  const match = IPV4_TEXT.exec(text);
  if (!match) return undefined;
  const out = Buffer.alloc(4);
  for (let i = 0; i < 4; i++) {
    const part = match[i + 1];
    // Leading zeros are refused: some stacks read them as octal.
    if (part.length > 1 && part[0] === '0') return undefined;
    const value = Number(part);
    if (value > 255) return undefined;
    out[i] = value;
  }
  return out;
}

function parseIpv6(text: string): Buffer | undefined {
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const groups = part.split(':');
    const words: number[] = [];
    for (let i = 0; i < groups.length; i++) {
      const group = groups[i];
      if (i === groups.length - 1 && group.includes('.')) {
        const v4 = parseIpv4(group);
        if (!v4) return undefined;
        words.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(group)) {
        words.push(parseInt(group, 16));
      } else {
        return undefined;
      }
    }
    return words;
  };
  const head = parseGroups(halves[0]);
  const tail = halves.length === 2 ? parseGroups(halves[1]) : [];
  if (!head || !tail) return undefined;
  const total = head.length + tail.length;
  if (halves.length === 2 ? total > 7 : total !== 8) return undefined;
  const words = [...head, ...new Array<number>(8 - total).fill(0), ...tail];
  const out = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(words[i], 2 * i);
  return out;
}
