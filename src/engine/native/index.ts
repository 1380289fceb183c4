export { addonPath, flowFinHolds, idleTimeForUserCode, nativeAvailable, type FlowFinHolds } from './binding.js';
export { NativeError } from './errors.js';
export {
  PktinfoUdpSocket,
  UdpBatch,
  UDP_RECORD_SIZE,
  type OutgoingDatagram,
  type PktinfoUdpSocketEvents,
  type PktinfoUdpSocketOptions,
  type ReceivedDatagram,
} from './udp.js';
export {
  PacketBatch,
  Tun,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_SIZE,
  readVirtioNetHeader,
  writeVirtioNetHeader,
  type TunEvents,
  type TunOffload,
  type TunOptions,
  type VirtioNetHeader,
} from './tun.js';
export { FastNat, type FastNatCounters } from './fast-nat.js';
export { PacketRelay, type PacketRelayEvents, type PacketRelayOptions, type PacketRelayStats } from './relay.js';
export {
  SeqpacketServer,
  SeqpacketSocket,
  seqpacketConnectFd,
  type SeqpacketServerEvents,
  type SeqpacketServerOptions,
  type SeqpacketSocketEvents,
  type SeqpacketSocketOptions,
} from './seqpacket.js';
export { AcceptedTcp, TcpAcceptor, nativeAcceptAvailable, type TcpAcceptorEvents } from './accept.js';
export { closeFd, currentNetns, dupFd, openNetns, setns, withNetns } from './netns.js';
export { RESET_FLUSH_MS, resetAfterFlush, resetOnClose, revealResets, socketFd, tcpCongestion, tcpInfo, tcpInfoAtClose, type TcpInfo } from './tcp-info.js';
export { SPLICE_PIPE_BYTES, socketBytes, spliceSockets, type SpliceOptions, type SpliceOutcome } from './splice.js';
export { READ_AHEAD_LINGER_MS, readAheadSocket, type ReadAheadSocket } from './read-ahead.js';
export {
  ANSWER_FLAG,
  ANSWER_STATE,
  BODY_END,
  createQuicClient,
  createQuicServer,
  QUIC_STREAM_HIGH_WATER,
  QuicClose,
  QuicEvent,
  QuicPumpEvent,
  type NativeQuicClient,
  type NativeQuicClientOptions,
  type NativeQuicConnSettings,
  type NativeQuicInfo,
  type NativeQuicServer,
  type NativeQuicServerOptions,
} from './quic.js';
