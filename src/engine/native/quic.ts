/**
 * The addon's QUIC on ngtcp2 + GnuTLS (cpp/quic-core.cc): a client (cpp/quicclient.cc) that owns
 * its UDP socket, and the edge's server (cpp/quicserver.cc) with many connections on one pktinfo
 * socket. Timers and packets stay on the loop thread in C++; JS sees stream bytes and connection
 * events only, in one Buffer per loop callback; the driver on top is
 * ../transport/quic/ngtcp2-connection.ts.
 *
 * Event record: [u8 type][u8 flag][u16 0][u32 length][f64 stream id][length bytes]. From the
 * server, a CONN record (id: the connection's handle) names the connection of the records after it.
 */
import {
  native,
  type NativeQuicClient,
  type NativeQuicClientOptions,
  type NativeQuicConnSettings,
  type NativeQuicInfo,
  type NativeQuicServer,
  type NativeQuicServerOptions,
} from './binding.js';

export type { NativeQuicClient, NativeQuicClientOptions, NativeQuicConnSettings, NativeQuicInfo, NativeQuicServer, NativeQuicServerOptions };

export const QuicEvent = {
  HANDSHAKE: 1,
  /** flag 1: FIN. */
  DATA: 2,
  /** payload: f64 application error code. */
  RESET: 3,
  STOP_SENDING: 4,
  /** The stream's unsent bytes fell below half of QUIC_STREAM_HIGH_WATER. */
  WRITABLE: 5,
  STREAM_CLOSED: 6,
  DATAGRAM: 7,
  STREAMS_AVAILABLE: 8,
  /** flag: QuicClose; payload: f64 code, then the reason. */
  CLOSED: 9,
  /** Packets from the peer arrived. */
  ANSWERED: 10,
  /** payload: f64 errno of a failed send or an ICMP error. */
  SEND_ERROR: 11,
  /** Server: the records that follow are about connection `id`. */
  CONN: 12,
  /** A stream's fd pump (cpp/quic-pump.cc): flag QuicPumpEvent, payload f64. */
  PUMP: 13,
  /** The largest DATAGRAM payload the path takes changed (a PMTUD probe was acknowledged): payload f64 bytes. */
  DATAGRAM_ROOM: 14,
} as const;

export const QuicPumpEvent = {
  /** payload: the answer's status (0: no status line). Lazy: it rides the next batch. */
  ANSWER: 1,
  /** payload: errno (0: EOF). */
  END: 2,
  DRAIN: 3,
  /** payload: an http1 HEAD record's payload, read off the stream whole (its bytes do not come as DATA). */
  HEAD: 4,
  /** The edge's answer pump (cpp/quic-answer.cc): an answer is whole and written; its figures are in the shared state. */
  ANSWER_DONE: 5,
  /** payload: why the connector's bytes cannot be framed as an answer. */
  ANSWER_BROKEN: 6,
  /** payload: f64 errno of a failed write to the client. */
  ANSWER_FAILED: 7,
  /** A plain pump's socket took every byte for it and its write side is shut. */
  SHUT: 8,
  /** A flows pump's flow is over (a terminator went each way): the stream's records come to JS again. */
  FLOW_DONE: 9,
  /** payload: the status of answers to heads the pump wrote itself (its route), and how many (f64; 1 when absent). Lazy. */
  FAST_ANSWER: 10,
  /** Before an END: u8 answered, then the HEAD record's payload of the last head the pump wrote itself. */
  FAST_HEAD: 11,
  /** payload: f64 0, f64 how many heads the pump wrote itself (its route) since the last such record. Lazy. */
  FAST_START: 13,
  /** The answer to a request the addon read from the client is whole and written: payload f64 status, f64 bytes (request + answer). */
  ANSWER_OWN_DONE: 20,
  /** The addon stopped reading the client (bytes that are JS's, its EOF or error): JS takes the socket back. */
  READ_BACK: 21,
  /** Answers to requests the addon read, whole and written, of one status: payload f64 status, f64 how many, f64 bytes (requests + answers). Lazy. */
  ANSWER_OWN_COUNT: 22,
  /** The addon's reads of a request body (AnswerPump.readBody) stopped: payload f64 BODY_END; JS takes the socket back (readStop). */
  BODY_END: 23,
  /** A dial's connect finished (the record's id is its token): payload f64 errno (0: connected). */
  DIALED: 12,
  /** A flows pump that starts at the flow's ANSWER (FdPumpEvents.atAnswer) started: the ANSWER was the OK one. Lazy. */
  FLOW_ANSWERED: 14,
  /** With FdPumpEvents.earlyRead: the accepted socket's first read failed: payload f64 errno. */
  EARLY_ERROR: 15,
  /**
   * A stream whose flows pumps were attached with OPENs as events (TunnelStream.onFlowOpen): a whole
   * OPEN record's payload read between flows; what follows waits for a flows pump (armed) or closePump.
   */
  FLOW_OPEN: 16,
  /**
   * FLOW_OPEN whose dial the addon made as it read the OPEN (NativeDialer.admitOpen admitted its
   * bytes before): payload f64 the dial's token (a DIALED record with it follows), then the OPEN's payload.
   */
  FLOW_OPEN_DIALED: 17,
  /**
   * FLOW_OPEN_DIALED whose flows pump the addon attached and armed too (at its connect, as
   * attachPump with the token would): JS's attachPump with that token takes it; else the stream goes.
   */
  FLOW_OPEN_PUMPED: 18,
} as const;

/** Slots of the Float64Array an answer pump shares with the addon (cpp/quic-core.h AnswerSlot). */
export const ANSWER_STATE = {
  /** Answers whole and written to the client. */
  DONE: 0,
  /** The last whole answer's status. */
  STATUS: 1,
  /** 1: the client connection closes after it. */
  CLOSE: 2,
  /** Bytes written to the client. */
  WRITTEN: 3,
  /** Answers whose first byte came. */
  STARTED: 4,
  /** Set by JS: report the next end at once, not with the next batch. */
  URGENT: 5,
  /** Bytes after an answer went to JS in a batch it has not read yet (cleared when it reads them). */
  HELD: 6,
  /** Requests the addon read from the client and forwarded (their answers count in STARTED, not DONE). */
  OWN: 7,
  /** Of them, answered whole. */
  OWN_DONE: 8,
  /** When the last of them was forwarded (ms, the monotonic clock of process.hrtime). */
  OWN_AT: 9,
  /** Bytes the addon read from the client. */
  READ: 10,
  /** When the last answer to one of them was written whole (ms, monotonic). */
  ACTIVE: 11,
  /** After readStop: the head of the request in flight at the start of the bytes returned (0: none). */
  BACK_HEAD: 12,
  /** WRITTEN when the request in flight was forwarded. */
  OWN_MARK: 13,
  /** After a readBody: 1 once the body the addon read ended whole (the bytes after it are readStop's). */
  BODY_DONE: 14,
  /** Body bytes the addon read and wrote to the stream. */
  BODY_READ: 15,
  /** 1: the client's FIN is in and nothing of its follows (the addon read the EOF, or JS did): the addon ends the connection with the answer in flight. */
  ENDED: 16,
  SLOTS: 17,
} as const;

/** Why the addon's reads of a request body stopped (cpp/quic-core.h BodyOutcome). */
export const BODY_END = {
  /** The body ended: readStop returns the bytes after it. */
  WHOLE: 0,
  /** Chunk framing the fast path does not take. */
  REFUSED: 1,
  /** The client's EOF or a read error mid-body. */
  CLIENT: 2,
  /** The stream takes no more. */
  STREAM: 3,
} as const;

/** armAnswer flags. */
export const ANSWER_FLAG = { HEAD_REQUEST: 1, CLOSE: 2, PREAMBLE: 4 } as const;

export const QuicClose = {
  PEER_APPLICATION: 1,
  PEER_TRANSPORT: 2,
  LOCAL_ERROR: 3,
  IDLE: 4,
  HANDSHAKE_TIMEOUT: 5,
  STATELESS_RESET: 6,
} as const;

/** write() returns the stream's unsent bytes: above this, wait for WRITABLE. */
export const QUIC_STREAM_HIGH_WATER = 1024 * 1024;

export function createQuicClient(options: NativeQuicClientOptions, onEvents: (batch: Buffer) => void): NativeQuicClient {
  return new (native().QuicClient)(options, onEvents);
}

export function createQuicServer(options: NativeQuicServerOptions, onEvents: (batch: Buffer) => void): NativeQuicServer {
  return new (native().QuicServer)(options, onEvents);
}
