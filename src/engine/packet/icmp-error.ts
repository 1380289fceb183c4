import { buildIcmp, type IpHeaderOptions } from './build.js';
import { Icmp4Type, Icmp6Type } from './constants.js';
import { parsePacket } from './parse.js';
import { PacketView } from './view.js';

/** Why a destination is unreachable; mapped to the ICMP and ICMPv6 codes below. */
export type UnreachableReason = 'network' | 'host' | 'port' | 'prohibited';

/** ICMPv4 type 3 codes (RFC 792, RFC 1812 §5.2.7.1). */
const UNREACHABLE_CODE_V4: Record<UnreachableReason, number> = { network: 0, host: 1, port: 3, prohibited: 13 };
/** ICMPv6 type 1 codes (RFC 4443 §3.1). */
const UNREACHABLE_CODE_V6: Record<UnreachableReason, number> = { network: 0, host: 3, port: 4, prohibited: 1 };

/** Longest quote that keeps an ICMPv4 error within 576 bytes (RFC 1812 §4.3.2.3). */
const MAX_QUOTE_V4 = 576 - 20 - 8;
/** Longest quote that keeps an ICMPv6 error within the minimum MTU, 1280 (RFC 4443 §2.4 (c)). */
const MAX_QUOTE_V6 = 1280 - 40 - 8;

export interface IcmpErrorOptions {
  /** Source of the error; default the original packet's destination. */
  from?: Uint8Array;
  /** Default 64. */
  ttl?: number;
  /** Default 0xC0 for IPv4 (precedence "internetwork control", RFC 1812 §4.3.2.5), 0 for IPv6. */
  tos?: number;
  /** IPv4 identification; default 0. */
  identification?: number;
  /** IPv4 DF bit; default false, as Linux sends its ICMP errors. */
  dontFragment?: boolean;
  flowLabel?: number;
}

/**
 * Builds the ICMP destination unreachable (type 3) or ICMPv6 destination unreachable
 * (type 1) answer to `original`, addressed to its source and quoting as much of it as
 * RFC 1812 / RFC 4443 allow (576 / 1280 bytes in all).
 *
 * Returns null when no error may be sent (RFC 1122 §3.2.2, RFC 4443 §2.4 (e)): the
 * original is malformed, an ICMP error itself, a non-initial fragment, or was sent to a
 * multicast/broadcast address or from an address that is not a host's.
 */
export function buildIcmpUnreachable(original: Buffer | PacketView, reason: UnreachableReason = 'host', options: IcmpErrorOptions = {}): Buffer | null {
  const view = asView(original);
  if (!view) return null;
  return view.version === 4
    ? buildIcmpError(view, Icmp4Type.DESTINATION_UNREACHABLE, UNREACHABLE_CODE_V4[reason], 0, options)
    : buildIcmpError(view, Icmp6Type.DESTINATION_UNREACHABLE, UNREACHABLE_CODE_V6[reason], 0, options);
}

/**
 * Builds "fragmentation needed and DF set" (ICMP type 3 code 4, next-hop MTU, RFC 1191)
 * or ICMPv6 packet too big (type 2, RFC 4443 §3.2) for `original`, which did not fit `mtu`.
 */
export function buildIcmpPacketTooBig(original: Buffer | PacketView, mtu: number, options: IcmpErrorOptions = {}): Buffer | null {
  const view = asView(original);
  if (!view) return null;
  return view.version === 4
    ? buildIcmpError(view, Icmp4Type.DESTINATION_UNREACHABLE, 4, mtu & 0xffff, options)
    : buildIcmpError(view, Icmp6Type.PACKET_TOO_BIG, 0, mtu >>> 0, options);
}

/** Builds ICMP/ICMPv6 time exceeded in transit (code 0) for `original`, whose TTL ran out. */
export function buildIcmpTimeExceeded(original: Buffer | PacketView, options: IcmpErrorOptions = {}): Buffer | null {
  return timeExceeded(original, 0, options);
}

/**
 * Builds ICMP/ICMPv6 time exceeded, "fragment reassembly time exceeded" (code 1; RFC 792,
 * RFC 8200 §4.5) for the first fragment (offset 0) of a datagram that never completed.
 */
export function buildIcmpReassemblyTimeExceeded(firstFragment: Buffer | PacketView, options: IcmpErrorOptions = {}): Buffer | null {
  return timeExceeded(firstFragment, 1, options);
}

function timeExceeded(original: Buffer | PacketView, code: 0 | 1, options: IcmpErrorOptions): Buffer | null {
  const view = asView(original);
  if (!view) return null;
  return buildIcmpError(view, view.version === 4 ? Icmp4Type.TIME_EXCEEDED : Icmp6Type.TIME_EXCEEDED, code, 0, options);
}

/**
 * True when an ICMP error may answer `view`. Packet-too-big is the one error IPv6 lets a
 * multicast destination trigger (RFC 4443 §2.4 (e.2)).
 */
export function mayAnswerWithIcmpError(view: PacketView, packetTooBig = false): boolean {
  if (view.isIcmpError) return false;
  if (view.isFragment && view.fragmentOffset !== 0) return false;
  const buf = view.buf;
  if (view.version === 4) {
    const src0 = buf[12];
    const dst0 = buf[16];
    // Source must name one host: not 0.0.0.0, multicast (224/4) or class E/broadcast (240/4).
    if (src0 >= 224 || (src0 === 0 && buf[13] === 0 && buf[14] === 0 && buf[15] === 0)) return false;
    // Not for multicast or limited broadcast destinations.
    if (dst0 >= 224 && dst0 <= 239) return false;
    if (dst0 === 255 && buf[17] === 255 && buf[18] === 255 && buf[19] === 255) return false;
    return true;
  }
  if (buf[8] === 0xff) return false;
  let unspecified = true;
  for (let i = 8; i < 24; i++) if (buf[i] !== 0) unspecified = false;
  if (unspecified) return false;
  return packetTooBig || buf[24] !== 0xff;
}

function asView(original: Buffer | PacketView): PacketView | undefined {
  if (original instanceof PacketView) return original;
  const parsed = parsePacket(original);
  return parsed.ok ? parsed : undefined;
}

function buildIcmpError(view: PacketView, type: number, code: number, restOfHeader: number, options: IcmpErrorOptions): Buffer | null {
  const v4 = view.version === 4;
  const tooBig = v4 ? type === 3 && code === 4 : type === Icmp6Type.PACKET_TOO_BIG;
  if (!mayAnswerWithIcmpError(view, tooBig)) return null;
  const quote = view.buf.subarray(0, Math.min(view.length, v4 ? MAX_QUOTE_V4 : MAX_QUOTE_V6));
  const ip: IpHeaderOptions = {
    src: options.from ?? view.dst,
    dst: view.src,
    ttl: options.ttl ?? 64,
    tos: options.tos ?? (v4 ? 0xc0 : 0),
    identification: options.identification ?? 0,
    dontFragment: options.dontFragment ?? false,
    flowLabel: options.flowLabel ?? 0,
  };
  return buildIcmp(ip, type, code, restOfHeader, quote);
}
