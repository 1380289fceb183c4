import { parseIpv4Into } from './ipv4.js';
import { parseIpv6Into } from './ipv6.js';
import { malformed, PacketView, type ParseResult } from './view.js';

/**
 * Parses the IP packet that starts at byte 0 of `buf`. Never throws and never reads past
 * `buf`: bad input comes back as a MalformedPacket (`ok: false`) with a reason.
 *
 * Pass `into` to reuse a view on the hot path (no allocation per packet); it then
 * describes the new packet, or holds unspecified values if the result is malformed.
 */
export function parsePacket(buf: Buffer, into?: PacketView): ParseResult {
  if (buf.length === 0) return malformed('empty');
  const version = buf[0] >> 4;
  if (version === 4) return parseIpv4Into(buf, into ?? new PacketView());
  if (version === 6) return parseIpv6Into(buf, into ?? new PacketView());
  return malformed('unknown-version');
}
