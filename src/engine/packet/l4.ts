import { ICMP_HEADER_LENGTH, IpProtocol, TCP_HEADER_LENGTH, UDP_HEADER_LENGTH } from './constants.js';
import { malformed, TransportKind, type MalformedPacket, type PacketView } from './view.js';

/**
 * Checks the transport header at `view.l4Offset` against the room the IP layer gives it
 * (`view.length`) and fills the transport fields. Called only for unfragmented packets.
 * Returns a MalformedPacket when the header does not fit, otherwise undefined.
 */
export function parseTransport(view: PacketView): MalformedPacket | undefined {
  const buf = view.buf;
  const l4 = view.l4Offset;
  const room = view.length - l4;
  switch (view.protocol) {
    case IpProtocol.TCP: {
      if (room < TCP_HEADER_LENGTH) return malformed('tcp-truncated');
      const headerLength = (buf[l4 + 12] >> 4) * 4;
      if (headerLength < TCP_HEADER_LENGTH || headerLength > room) return malformed('tcp-bad-data-offset');
      view.transport = TransportKind.Tcp;
      view.l4HeaderLength = headerLength;
      view.l4End = view.length;
      return undefined;
    }
    case IpProtocol.UDP: {
      if (room < UDP_HEADER_LENGTH) return malformed('udp-truncated');
      const udpLength = (buf[l4 + 4] << 8) | buf[l4 + 5];
      // A UDP length shorter than the IP room is legal (Linux trims the rest); longer is not.
      if (udpLength < UDP_HEADER_LENGTH || udpLength > room) return malformed('udp-bad-length');
      view.transport = TransportKind.Udp;
      view.l4HeaderLength = UDP_HEADER_LENGTH;
      view.l4End = l4 + udpLength;
      return undefined;
    }
    case IpProtocol.ICMP:
    case IpProtocol.ICMPV6: {
      // ICMP inside IPv6 (or ICMPv6 inside IPv4) is not ICMP for that stack: leave it opaque.
      if ((view.protocol === IpProtocol.ICMP) !== (view.version === 4)) break;
      if (room < ICMP_HEADER_LENGTH) return malformed('icmp-truncated');
      view.transport = TransportKind.Icmp;
      view.l4HeaderLength = ICMP_HEADER_LENGTH;
      view.l4End = view.length;
      return undefined;
    }
  }
  view.transport = TransportKind.None;
  view.l4HeaderLength = 0;
  view.l4End = view.length;
  return undefined;
}
