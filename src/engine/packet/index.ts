/**
 * The packet layer of the edge's IP path: zero-copy IPv4/IPv6/TCP/UDP/ICMP parsing,
 * checksums with RFC 1624 incremental updates for the NAT, builders, and flow keys.
 *
 * Hot path: `parsePacket(buf, view)` → `flowKey(view)` → `rewriteSource/Destination(view, …)`.
 * Nothing on that path throws on packet contents or copies packet bytes.
 */
export { IpProtocol, TcpFlag, Icmp4Type, Icmp6Type } from './constants.js';
export { PacketView, MalformedPacket, TransportKind, type MalformedReason, type ParseResult } from './view.js';
export { parsePacket } from './parse.js';
export { MAX_IPV6_EXTENSION_HEADERS } from './ipv6.js';
export {
  sumWords,
  foldSum,
  finishChecksum,
  internetChecksum,
  pseudoHeaderSum,
  pseudoHeaderSumAt,
  updateChecksum,
  updatePartialChecksum,
} from './checksum.js';
export { computeIpv4HeaderChecksum, verifyIpv4HeaderChecksum, computeTransportChecksum, verifyTransportChecksum, fillChecksums } from './verify.js';
export { rewriteSource, rewriteDestination, decrementTtl, type ChecksumMode } from './rewrite.js';
export {
  buildUdp,
  buildTcp,
  buildIcmpEcho,
  buildIcmp,
  allocIpPacket,
  type IpHeaderOptions,
  type UdpOptions,
  type TcpOptions,
  type IcmpEchoOptions,
} from './build.js';
export {
  buildIcmpUnreachable,
  buildIcmpPacketTooBig,
  buildIcmpTimeExceeded,
  buildIcmpReassemblyTimeExceeded,
  mayAnswerWithIcmpError,
  type UnreachableReason,
  type IcmpErrorOptions,
} from './icmp-error.js';
export { buildFragment, fragmentPacket, unfragmentablePart, ipv6NextHeaderField, IPV6_FRAGMENT_HEADER_LENGTH } from './fragment.js';
export { flowKey, reverseFlowKey, quotedFlowKey, flowKeyOf, parseFlowKey, describeFlowKey, type FlowKey, type FlowTuple } from './flow-key.js';
export { formatAddress, formatEndpoint, parseAddress } from '../../core/address.js';
export { describePacket } from './format.js';
