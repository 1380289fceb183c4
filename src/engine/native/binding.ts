/**
 * Loads build/Release/oxy_native.node (lazily, so importing this module never
 * fails on a machine without the addon) and describes its raw interface. The
 * public, typed API is in udp.ts, tun.ts, seqpacket.ts and netns.ts.
 */
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../core/paths.js';

import { OxyError } from '../../core/errors.js';
import { NativeError } from './errors.js';
import type { TcpInfo } from './tcp-info.js';

type Bytes = Uint8Array;
type OnError = (err: NativeError) => void;

export interface NativeUdpSocket {
  readonly fd: number;
  readonly family: 4 | 6;
  bind(address: string, port: number): void;
  address(): { family: 4 | 6; address: string; port: number };
  setBufferSizes(recv: number | undefined, send: number | undefined): void;
  getBufferSizes(): [number, number];
  start(onBatch: (data: Buffer, meta: Buffer, count: number) => void, onWritable: () => void, onError: OnError): void;
  setEvents(readable: boolean, writable: boolean): void;
  sendBatch(datagrams: readonly object[], start: number): number;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface NativeTunDevice {
  readonly fd: number;
  readonly name: string;
  readonly vnetHeader: boolean;
  readonly ifIndex: number;
  setMtu(mtu: number): void;
  getMtu(): number;
  setTxQueueLength(length: number): void;
  setUp(up: boolean): void;
  start(onBatch: (data: Buffer, offsets: Uint32Array, count: number) => void, onWritable: () => void, onError: OnError): void;
  setEvents(readable: boolean, writable: boolean): void;
  writeBatch(packets: readonly Bytes[], start: number): number;
  setFastNat(nat: NativeFastNat): void;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface NativeFastNat {
  add(
    id: number,
    peer: number,
    src: Bytes,
    srcPort: number,
    dst: Bytes,
    dstPort: number,
    nat: Bytes,
    natPort: number,
    listen: Bytes,
    listenPort: number,
  ): boolean;
  remove(id: number): void;
  /** Native SYNs (fastnat.h): the peer's SYNs to dst:dstPort (IPv4) may be registered at once. */
  admit(peer: number, dst: Bytes, dstPort: number): void;
  /** The peer's admitted destinations forgotten. */
  forget(peer: number): void;
  /** A flow id and an IPv4 NAT slot reserved for the peer's next native SYN. */
  ticket(peer: number, id: number, nat: Bytes, natPort: number, listen: Bytes, listenPort: number): void;
  /** The peer's unused tickets dropped. */
  dropTickets(peer: number): void;
  /** Records of the flows born since the last call (24 bytes each), or undefined. */
  takeBorn(): Buffer | undefined;
  totals(): [
    toKernel: number,
    toClients: number,
    lost: number,
    refused: number,
    sameTurnSockets: number,
    sameTurnTun: number,
    sameTurnTunCounted: number,
    tunRingWrites: number,
    tunRingEnters: number,
    tunRingReads: number,
    tunRingUpgradeReads: number,
  ];
}

export interface NativeSeqpacketSocket {
  readonly fd: number;
  start(
    onBatch: (data: Buffer, offsets: Uint32Array, count: number, fds: (number[] | undefined)[] | undefined, born?: boolean) => void,
    onWritable: () => void,
    onEnd: () => void,
    onError: OnError,
  ): void;
  setEvents(readable: boolean, writable: boolean): void;
  send(data: Bytes, fds?: readonly number[]): boolean;
  shutdown(): void;
  setBufferSizes(recv: number | undefined, send: number | undefined): void;
  joinFastNat(nat: NativeFastNat, partialChecksums: boolean, sendsPartial: boolean): number;
  adoptTun(fd: number): void;
  writeTun(packet: Bytes): boolean;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface NativePacketRelay {
  start(onMessage: (data: Buffer) => void, onEnd: () => void, onError: OnError): void;
  send(data: Bytes): boolean;
  stats(): { packetsOut: number; packetsIn: number; tunRefused: number; thread: boolean; ring: boolean; partialSends: boolean };
  sendPartial(): boolean;
  offerTun(message: Bytes): boolean;
  handOver(): number;
  close(): void;
}

export interface NativeSeqpacketServer {
  readonly fd: number;
  start(onConnections: (fds: number[]) => void, onError: OnError): void;
  setEvents(readable: boolean): void;
  close(): void;
  ref(): void;
  unref(): void;
}

/** The edge's upgrade listener accepted by the addon (cpp/accept.cc; native/accept.ts). */
export interface NativeTcpAcceptor {
  readonly fd: number;
  start(
    onAccepted: (records: Buffer, count: number) => void,
    onRead: (token: number, chunk: Buffer | undefined, errno: number) => void,
    onError: OnError,
  ): void;
  setEvents(readable: boolean): void;
  read(token: number): boolean;
  take(token: number): number;
  drop(token: number, reset: boolean): void;
  congestion(token: number, name: string): boolean;
  /** First chunks read for QUIC pumps on this thread: [at the accept, at a wake-up] (older builds: absent). */
  earlyReads?(): [number, number];
  close(): void;
  ref(): void;
  unref(): void;
}

/** Info of one ngtcp2 connection (cpp/quic-core.cc), client or server. */
export interface NativeQuicInfo {
  rttMs: number;
  cwnd: number;
  sent: number;
  recv: number;
  /** Packets with stream data declared lost (spurious losses included). */
  lost: number;
  localAddress: { family: 4 | 6; address: string; port: number };
  remoteAddress: { family: 4 | 6; address: string; port: number };
  maxDatagramSize: number;
  /** The UDP payload of full packets on the path now: PMTUD's size so far (1,200 until a probe is acknowledged), or the fixed size without it. */
  pathPayload?: number;
  /** Path MTU discovery runs on this connection (NativeQuicConnSettings.pmtud, not on a loopback path). */
  pmtud?: boolean;
  /** The 1-RTT AEAD and who runs it: "AES-128-GCM/vaes-avx512" (cpp/quic-aead.cc), "CHACHA20-POLY1305/gnutls", … ("" before the handshake's keys). */
  aead: string;
  alpn: string;
  sendErrors: number;
  /** Packets dropped because the socket's send buffer was full (loss recovery resends them). */
  sendDropped: number;
  /** Streams the addon still holds (unacknowledged bytes, or not closed by ngtcp2 yet). */
  streams: number;
  /** Client: UDP GSO still on (the kernel refused none), and messages that carried several packets. */
  gso?: boolean;
  gsoSends?: number;
  /** Client: the most packets one sendmmsg carried (a flush's, up to 256; 64 with OXY_QUIC_SEND_BATCH=0). */
  largestSend?: number;
  /** Client: UDP GRO on, and messages received that carried several packets. */
  gro?: boolean;
  groReads?: number;
  /** What paces a bulk transfer (also printed by OXY_QUIC_TRACE=MS): docs/decisions.md "Uploads over QUIC: what waits". */
  counters?: NativeQuicCounters;
}

/** Counters of one ngtcp2 connection since it began (Conn::Counters in cpp/quic-core.h). */
export interface NativeQuicCounters {
  /** Flushes that wrote packets, and the stream bytes handed to ngtcp2. */
  flushes: number;
  streamBytes: number;
  /** Flushes that stopped with stream bytes waiting: the congestion window full, ngtcp2's pacing, the peer's stream / connection credit. */
  stopCwnd: number;
  stopPacing: number;
  stopBlocked: number;
  stopData: number;
  /** µs from a flush that stopped on the window to the next that sent stream bytes, summed. */
  cwndWaitUs: number;
  /** Pacing times under 1 ms left without the precise timer because the window was full (the next ACK's read flushes). */
  paceSkips: number;
  /** Flushes that wrote packets after packets were read (ACKs, mostly), and µs from the first of those reads to them, summed. */
  answers: number;
  answerUs: number;
  /** Timer callbacks; those that sent packets with no stream bytes waiting (delayed ACKs) and their lateness past ngtcp2's deadline (µs, summed). */
  timerFires: number;
  timerAcks: number;
  timerLateUs: number;
  /** Times credit for received bytes was held back (a paused reader, a pump's fd or an answer's client behind). */
  creditHeld: number;
  /** Writes that left more than 1 MiB unsent (the writer waits for WRITABLE). */
  writableWaits: number;
  /** Flushes after a bulk read (≥ 32 KiB of stream bytes) that sent their packets, the ACK among them, before writing the bytes to their sockets (only with OXY_QUIC_ACK_FIRST=1). */
  acksFirst: number;
  /** Reads (one recvmmsg) whose ACK went out after the first message that brought ≥ 32 KiB of stream bytes, before the rest were decrypted (only with OXY_QUIC_ACK_SPLIT=1, or =server / =client at that end). */
  acksSplit: number;
  /** Key updates this end began (only with OXY_QUIC_KEY_UPDATE=N: one per N packets sent, for tests). */
  keyUpdates: number;
  /** Flushes that wrote packets and set no pacing time: with OXY_QUIC_PACING=far, on a path whose min RTT is under 1 ms; every flush with =0. */
  unpaced: number;
  /** Reads of the pumps' fds that brought bytes (the connector's host sockets, the edge's upgraded ones), and their bytes: at most 256 KiB each (OXY_PUMP_READ=0: 64 KiB). */
  pumpReads: number;
  pumpReadBytes: number;
  /** The largest of those reads. */
  pumpReadMax: number;
  /** Flushes whose pumps' writes (two at least) went in one io_uring_enter, the writes in them that took bytes, and those that found their socket full (short, or EAGAIN: the rest waits for room as before) (OXY_PUMP_RING=0: none; cpp/quic-pump.cc RingWrites). */
  ringEnters: number;
  ringWrites: number;
  ringShort: number;
  /** The connector's: OPENs the addon dialled as it read them (NativeDialer.admitOpen). */
  opensDialed?: number;
  /** ... whose flows pump the addon attached there too (FLOW_OPEN_PUMPED). */
  opensPumped?: number;
  minRttUs: number;
  bytesInFlight: number;
}

/** cpp/quicclient.cc: one QUIC client connection on ngtcp2 + GnuTLS with its own UDP socket. */
export interface NativeQuicClient {
  openStream(): number;
  write(id: number, data: Bytes | undefined, fin: boolean): number;
  shutdownStream(id: number, code: number): void;
  setReadPaused(id: number, paused: boolean): void;
  sendDatagram(data: Bytes): boolean;
  closeConnection(code: number, reason: string, transport: boolean): void;
  probe(): void;
  info(): NativeQuicInfo;
  peerCertificates(): Buffer[];
  streamsLeft(): number;
  /**
   * Stream `id` pumped to and from (a duplicate of) TCP socket `fd` (cpp/quic-pump.cc); mode 0: http1
   * records, 1 (plain): a private TCP flow's, 2 (flows): one private TCP flow of a `tcp-flows` stream.
   */
  /** `source` 1 (or true): `fd` is a dial's token; 2: a TcpAcceptor's token (the edge's accepted socket). */
  attachPump(id: number, fd: number, mode: number, source?: boolean | number, answer?: Uint8Array, open?: Uint8Array): boolean;
  /**
   * A private flow's TCP connect by the addon to `addr` (4 or 16 bytes): a token (a PUMP DIALED record
   * follows), or -errno. `keepAliveLate`: the keep-alive options are set only on a pump's socket still
   * open after a quarter to a half of the idle time (the same probes), at once on a socket taken by JS.
   */
  dial(addr: Bytes, port: number, keepAliveMs: number, keepAliveLate?: boolean): number;
  /** Closes a dial's socket; takeDial: its fd, now the caller's (-1: none). */
  closeDial(token: number): void;
  takeDial(token: number): number;
  /**
   * An OPEN payload the connector admitted, to `addr`:`port`: an OPEN of these bytes read between
   * flows is dialled by the addon at once (a PUMP FLOW_OPEN_DIALED record with its token) while
   * `epoch[0]` reads what it reads now.
   */
  admitOpen(payload: Bytes, addr: Bytes, port: number, keepAliveMs: number, keepAliveLate: boolean, epoch: Int32Array, ok?: Bytes): void;
  /** A plain pump's stream side ended: its fd's write side is shut after what is queued (a PUMP SHUT record follows; flows: none). */
  shutPump(id: number): void;
  /** A flows pump's flow was reset by the peer: the socket is reset, a RESET record answers unless one went. */
  resetPump(id: number): void;
  /** Bytes for the pump's fd; returns those not yet written, -1 when it takes none. */
  pumpWrite(id: number, data: Bytes, head: boolean): number;
  /** Returns the request bytes it read off the stream and wrote to the fd without JS. */
  closePump(id: number, reset?: boolean): number;
  /**
   * JS's parsers of stream `id` are at a boundary: whole HEAD records may come as PUMP records
   * (mode 0). Mode 1 (records): the addon reads every record from here on (BODY bytes to the fd,
   * the rest as whole frames), from JS's point: `frameLeft` payload bytes of its current frame
   * and `bodyLeft` of its current BODY record still to come; mode 2 (plain): every byte to the fd;
   * mode 3 (flows): tcp-flows records (`bodyLeft`: of the DATA record being read), DATA to the fd.
   * 1: armed; 0: not now, ask again after the next batch; -1: never (JS reads the rest itself).
   */
  armPumpHeads(id: number, mode: number, frameLeft: number, bodyLeft: number): number;
  /** The pump writes the heads of HEAD records itself: any host's (true), or those whose host field is these bytes; undefined: none. */
  pumpRoute(id: number, route: true | Bytes | undefined): void;
  close(): void;
  ref(): void;
  unref(): void;
}

/** Connection settings both the client and the server take (cpp/quic-core.cc ConnSettings). */
export interface NativeQuicConnSettings {
  maxUdpPayloadSize: number;
  maxRecvUdpPayloadSize: number;
  idleTimeoutMs: number;
  keepAliveMs: number;
  initialMaxData: number;
  initialMaxStreamData: number;
  maxStreamWindow: number;
  maxConnectionWindow: number;
  maxConcurrentStreams: number;
  /** 'cubic', 'reno', 'bbr' or 'bbr2'. */
  congestionControl: string;
  /**
   * On a loopback path (the peer is 127/8 or ::1), 0 = as elsewhere: the UDP payload offered and
   * sent, the bytes ngtcp2's congestion controller counts as one packet when it sizes its window,
   * and ack-eliciting packets per ACK (docs/decisions.md "QUIC bulk on ngtcp2 (session 8)").
   */
  loopbackUdpPayloadSize?: number;
  loopbackCwndUnit?: number;
  loopbackAckThreshold?: number;
  /**
   * Off loopback, 0 = the packet size: the bytes ngtcp2's congestion controller counts as one
   * packet (its initial window is 2 units, its cap's floor 2.89 × 2 units, its floor after a
   * loss 2 units).
   */
  cwndUnit?: number;
  /**
   * The same unit for a connection whose peer is at a near address (RFC 1918, 198.18.0.0/15,
   * link-local, fc00::/7; cpp/quic-core.cc IsNearAddress), decided per connection from its path. A
   * connector passes NEAR_CWND_UNIT, an edge EDGE_NEAR_CWND_UNIT (transport/quic/config.ts).
   */
  nearCwndUnit?: number;
  /** Runs of equal-size packets on one path as one UDP GSO message. Default true; off by itself once the kernel refuses one. */
  gso?: boolean;
  /** Receive runs of packets coalesced by the kernel (UDP GRO), split in the addon. Default true. */
  gro?: boolean;
  /**
   * Path MTU discovery off loopback: packets from 1,200 bytes up to what ngtcp2's probes find
   * (up to maxUdpPayloadSize and the peer's limit), DF on the socket. Default false.
   */
  pmtud?: boolean;
}

export interface NativeQuicClientOptions extends NativeQuicConnSettings {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  family: 4 | 6;
  alpn: string;
  /** Trusted CA certificates, PEM. */
  ca: string;
  /** Dialed name (SNI and the certificate name check), or null for an IP. */
  serverName: string | null;
  socketBufferBytes: number;
}

/** cpp/quicserver.cc: the edge's QUIC listener on ngtcp2 + GnuTLS; connections are named by handle. */
export interface NativeQuicServer {
  openStream(conn: number): number;
  write(conn: number, id: number, data: Bytes | undefined, fin: boolean): number;
  shutdownStream(conn: number, id: number, code: number): void;
  setReadPaused(conn: number, id: number, paused: boolean): void;
  sendDatagram(conn: number, data: Bytes): boolean;
  closeConnection(conn: number, code: number, reason: string, transport: boolean): void;
  probe(conn: number): void;
  info(conn: number): NativeQuicInfo;
  streamsLeft(conn: number): number;
  /** Forgets a connection without a packet. */
  abandon(conn: number): void;
  /** Takes no new connections. */
  stop(): void;
  stats(): {
    connections: number;
    cids: number;
    refused: number;
    invalidTokens: number;
    resetsSent: number;
    acceptFailures: number;
    /** UDP GSO still on, and messages that carried several packets. */
    gso: boolean;
    gsoSends: number;
    /** The most packets one sendmmsg carried (a flush's, up to 256; 64 with OXY_QUIC_SEND_BATCH=0). */
    largestSend: number;
    /** UDP GRO on, and messages received that carried several packets. */
    gro: boolean;
    groReads: number;
  };
  address(): { family: 4 | 6; address: string; port: number };
  /**
   * The edge's answer pumps (cpp/quic-answer.cc): stream `id`'s answers may be written to (a
   * duplicate of) the client socket `fd`; `state` is shared (ANSWER_STATE slots).
   */
  attachAnswers(conn: number, id: number, fd: number, state: Float64Array, keepAlive: Bytes, extra: Bytes): boolean;
  /** The next answer goes to the client natively (flags: ANSWER_FLAG). */
  armAnswer(conn: number, id: number, flags: number): boolean;
  closeAnswers(conn: number, id: number): void;
  /** NativeQuicClient's fd pumps (cpp/quic-pump.cc) on connection `conn`: the edge's upgraded sockets of private TCP flows. */
  attachPump(conn: number, id: number, fd: number, mode: number, source?: number, answer?: Uint8Array, open?: Uint8Array): boolean;
  shutPump(conn: number, id: number): void;
  resetPump(conn: number, id: number): void;
  pumpWrite(conn: number, id: number, data: Bytes, head: boolean): number;
  closePump(conn: number, id: number, reset?: boolean): number;
  armPumpHeads(conn: number, id: number, mode: number, frameLeft: number, bodyLeft: number): number;
  /** The addon reads the answer pump's client socket (JS's handle stopped), forwarding plain requests for `host` itself. */
  readClient(conn: number, id: number, host: Bytes, client: Bytes): boolean;
  /** It stops: the bytes it read that are JS's (the head of a request in flight first, ANSWER_STATE.BACK_HEAD bytes). */
  readClientStop(conn: number, id: number): Buffer;
  /** The addon reads the request body from the client (JS's handle stopped): `left` bytes, or chunked from `chunkState` (ChunkedBody.handOver). */
  readBody(conn: number, id: number, left: number, chunkState?: Float64Array): boolean;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface NativeQuicServerOptions extends NativeQuicConnSettings {
  /** A bound UDP socket; the server works on a duplicate of it. */
  fd: number;
  alpn: string;
  /** Certificate chain and key, PEM. */
  cert: string;
  key: string;
  /** HMAC key of the stateless reset tokens (StatelessResets.key). */
  resetKey: Uint8Array;
  /** HMAC key of the retry tokens (RetryTokens.key); absent: no retry. */
  retryKey?: Uint8Array;
  retryLifetimeMs: number;
  maxConnections: number;
}

/**
 * A dialed flow's first answer, whole and saying `Connection: close`, held for the host's FIN
 * (OXY_FLOW_FIN_HOLD, cpp/quic-pump.cc PumpRead), on this thread since it began: held, then let go
 * by the FIN, by the hold's end (deadline), or by anything else (later bytes, a read error, the
 * pump closed); µs held, summed; the hold timer's wake-ups (the loop sleeps while answers wait).
 */
export interface FlowFinHolds {
  held: number;
  fin: number;
  deadline: number;
  other: number;
  heldUs: number;
  wakes: number;
}

export interface NativeAddon {
  supported: boolean;
  /** Whether loading the addon turned libuv's idle-time poll off for this thread's loop (cpp/common.h LoopOneWait; OXY_LOOP_ONE_WAIT=0 leaves it on). */
  loopOneWait?: boolean;
  /**
   * This thread's spin before its loop sleeps (cpp/common.h NoteLoopWork; OXY_LOOP_SPIN µs, default 20, 0 = off):
   * the budget, the polls that did not wait, the spins that work ended (a sleep not taken) and those that ran out.
   */
  loopSpin?(): { spinUs: number; polls: number; caught: number; slept: number };
  /** The connector's closing answers held for the host's FIN on this thread (cpp/quic-core.h FinHoldCounts). */
  flowFinHolds?(): FlowFinHolds;
  /** Turns the idle-time metric back on for this thread's loop, so eventLoopUtilization() reads true again (a hooks module may read it): whether it is on. */
  loopIdleTimeBack?(): boolean;
  setErrorFactory(factory: (syscall: string, errno: number, code: string, message: string) => Error): void;
  UdpSocket: new (
    family: 4 | 6,
    options: {
      fd?: number;
      ipv6Only: boolean;
      reuseAddress: boolean;
      reusePort: boolean;
      batchSize: number;
      maxDatagramSize: number;
      maxReadsPerWakeup: number;
    },
  ) => NativeUdpSocket;
  TunDevice: new (options: {
    fd?: number;
    name: string;
    vnetHeader: boolean;
    partialChecksums?: boolean;
    offload: number;
    multiQueue: boolean;
    batchSize: number;
    maxPacketSize: number;
  }) => NativeTunDevice;
  PacketRelay: new (
    tunFd: number,
    socketFd: number,
    options: { maxPacketSize: number; sendBufferSize?: number; thread: boolean; ring?: boolean },
  ) => NativePacketRelay;
  SeqpacketSocket: new (fd: number, options: { maxMessageSize: number; batchSize: number }) => NativeSeqpacketSocket;
  SeqpacketServer: new (fd: number) => NativeSeqpacketServer;
  TcpAcceptor?: new (fd: number) => NativeTcpAcceptor;
  /**
   * The QUIC packet protection's AES-GCM (cpp/aes-gcm.h) one-shot, for tests; impl null (no VAES):
   * seal and open return undefined. open returns null when the tag does not match.
   */
  aesGcm: {
    impl: string | null;
    seal(key: Bytes, nonce: Bytes, aad: Bytes, plaintext: Bytes, avx2: boolean): Buffer | undefined;
    open(key: Bytes, nonce: Bytes, aad: Bytes, sealed: Bytes, avx2: boolean): Buffer | null | undefined;
  };
  FastNat: new (stats: Float64Array, fastClose: boolean, nativeFins: boolean) => NativeFastNat;
  seqpacketListen(path: string, backlog: number): number;
  seqpacketConnect(path: string): number;
  seqpacketPair(): [number, number];
  setns(fd: number, nstype?: number): void;
  openNetns(path: string): number;
  closeFd(fd: number): void;
  dupFd(fd: number): number;
  tcpInfo(fd: number): TcpInfo;
  tcpCongestion(fd: number, name?: string): string;
  socketError(fd: number): number;
  resetOnClose(fd: number): void;
  socketOutQueue(fd: number): number;
  unreadAfterHangUp(fd: number): number;
  spliceSockets(
    fdA: number,
    fdB: number,
    pipeBytes: number,
    counters: BigUint64Array,
    done: (error: NativeError | null, aToB: number, bToA: number, cancelled: boolean) => void,
    copy: boolean,
  ): number;
  cancelSplice(id: number): void;
  readAhead(tcpFd: number, maxQueued: number, done: (error: NativeError | null, cancelled: boolean) => void, placement?: string): [number, number];
  cancelReadAhead(id: number): void;
  tcpListenReusePort(address: string, port: number, backlog: number, ipv6Only: boolean): number;
  udpBindReusePort(address: string, port: number, ipv6Only: boolean): number;
  socketAddress(fd: number): { family: 4 | 6; address: string; port: number };
  QuicClient: new (options: NativeQuicClientOptions, onEvents: (batch: Buffer) => void) => NativeQuicClient;
  QuicServer: new (options: NativeQuicServerOptions, onEvents: (batch: Buffer) => void) => NativeQuicServer;
  /** The edge's native response framer (cpp/http1-answer.cc) on its own: what ResponseReader makes of `chunks`. */
  frameAnswer(
    chunks: Buffer[],
    headRequest: boolean,
    close: boolean,
    keepAlive: string,
    extra: string,
  ): { out: Buffer; used: number[]; done: boolean; ended: boolean; status: number; close: boolean; serverClose: boolean; untouched: boolean; error?: string };
  /** A C++ switch (cpp/common.h EnvSwitchOn) read now: on unless the environment's `name` is exactly '0', as every TS switch. */
  envSwitchOn(name: string): boolean;
  /** How the addon's QUIC connections class a peer's address (cpp/quic-core.cc IsLoopback, IsNearAddress): loopback profile, near-window unit. Throws on text that is not an address. */
  addressKind(address: string): { loopback: boolean; near: boolean };
  /** The fast path's NAT rewrite (cpp/fastnat.cc ParseTcp + Rewrite) on a copy of `packet`, or undefined where it leaves the packet to JS. */
  natRewrite(packet: Buffer, src: Buffer, srcPort: number, dst: Buffer, dstPort: number): Buffer | undefined;
  /** The status the addon's pumps count for an answer whose first read is `bytes` (cpp/http1-answer.cc AnswerStatus; protocol/http1.ts answerStatus). */
  answerStatus(bytes: Buffer): number;
  /** The connector's FIN hold (cpp/quic-pump.cc, ClosingAnswerWhole in cpp/http1-answer.cc): `bytes`, a flow's first read, is one whole answer saying `Connection: close`. */
  closingAnswerWhole(bytes: Buffer): boolean;
  /** The edge's native request scanner (cpp/http1-answer.cc) on its own: the DATA frame holding the HEAD record it writes for `head`, or undefined (JS reads it). */
  scanPlainRequest(head: Buffer, client: string): Buffer | undefined;
  /** The edge's native chunk checker (cpp/http1-answer.cc ChunkCheck) on its own: what it makes of `chunks` from `state` (ChunkedBody.handOver). */
  checkChunked(chunks: Buffer[], state: number[]): { used: number[]; done: boolean; error?: string };
  CLONE_NEWNET: number;
  TUN_F: { CSUM: number; TSO4: number; TSO6: number; TSO_ECN: number; UFO: number };
}

/** Where the addon is looked for; OXY_NATIVE_ADDON overrides (e.g. a Debug build). */
export function addonPath(): string {
  if (process.env.OXY_NATIVE_ADDON) return process.env.OXY_NATIVE_ADDON;
  return join(packageRoot(), 'build/Release/oxy_native.node');
}

let loaded: NativeAddon | undefined;

export function native(): NativeAddon {
  if (loaded) return loaded;
  const path = addonPath();
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (cause) {
    throw new OxyError('OXY_ERR_NATIVE_UNAVAILABLE', `native addon not loadable from ${path}; build it with \`npm run install\` (node-gyp rebuild)`, {
      cause,
    });
  }
  if (!addon.supported) throw new OxyError('OXY_ERR_NATIVE_UNAVAILABLE', `native addon is Linux-only (this is ${process.platform})`);
  // Batch metadata is written in host order and read as little-endian.
  if (endianness() !== 'LE') throw new OxyError('OXY_ERR_NATIVE_UNAVAILABLE', 'native addon supports little-endian hosts only');
  addon.setErrorFactory((syscall, errno, code, message) => new NativeError(syscall, errno, code, message));
  loaded = addon;
  return addon;
}

/**
 * Before code that is not ours runs here (a hooks module): libuv's idle-time metric back on, which
 * loading the addon turned off (cpp/common.h LoopOneWait), so that the code's
 * performance.eventLoopUtilization() reads a true figure — a module may shed load by it.
 */
export function idleTimeForUserCode(): void {
  if (!nativeAvailable()) return;
  const addon = native();
  if (addon.loopOneWait) addon.loopIdleTimeBack?.();
}

/** This thread's FIN holds so far (zeros without the addon). */
export function flowFinHolds(): FlowFinHolds {
  return (nativeAvailable() ? native().flowFinHolds?.() : undefined) ?? { held: 0, fin: 0, deadline: 0, other: 0, heldUs: 0, wakes: 0 };
}

/** True when the addon loads here (Linux, built). */
export function nativeAvailable(): boolean {
  try {
    native();
    return true;
  } catch {
    return false;
  }
}
