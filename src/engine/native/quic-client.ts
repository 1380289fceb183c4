/**
 * The addon's QUIC client (cpp/quicclient.cc): one connection on ngtcp2 + GnuTLS that owns its
 * UDP socket, timers and packets on the loop thread. JS sees stream bytes and connection events
 * only, in one Buffer per loop callback; the driver on top is
 * ../transport/quic/ngtcp2-connection.ts.
 *
 * Event record: [u8 type][u8 flag][u16 0][u32 length][f64 stream id][length bytes].
 */
import { native, type NativeQuicClient, type NativeQuicClientOptions } from './binding.js';

export type { NativeQuicClient, NativeQuicClientOptions };

export const QuicClientEvent = {
  HANDSHAKE: 1,
  /** flag 1: FIN. */
  DATA: 2,
  /** payload: f64 application error code. */
  RESET: 3,
  STOP_SENDING: 4,
  /** The stream's unsent bytes fell below half of QUIC_CLIENT_HIGH_WATER. */
  WRITABLE: 5,
  STREAM_CLOSED: 6,
  DATAGRAM: 7,
  STREAMS_AVAILABLE: 8,
  /** flag: QuicClientClose; payload: f64 code, then the reason. */
  CLOSED: 9,
  /** Packets from the peer arrived. */
  ANSWERED: 10,
  /** payload: f64 errno of a failed send or an ICMP error. */
  SEND_ERROR: 11,
} as const;

export const QuicClientClose = {
  PEER_APPLICATION: 1,
  PEER_TRANSPORT: 2,
  LOCAL_ERROR: 3,
  IDLE: 4,
  HANDSHAKE_TIMEOUT: 5,
  STATELESS_RESET: 6,
} as const;

/** write() returns the stream's unsent bytes: above this, wait for WRITABLE. */
export const QUIC_CLIENT_HIGH_WATER = 1024 * 1024;

export function createQuicClient(options: NativeQuicClientOptions, onEvents: (batch: Buffer) => void): NativeQuicClient {
  return new (native().QuicClient)(options, onEvents);
}
