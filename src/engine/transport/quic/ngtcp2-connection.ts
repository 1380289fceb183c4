/**
 * A QUIC TunnelConnection on the addon's ngtcp2 (native/cpp/quic-core.cc): the connector's
 * (`OXY_QUIC_IMPL=ngtcp2`: the addon's client owns its UDP socket) or the edge's
 * (`OXY_QUIC_SERVER_IMPL=ngtcp2`: one connection of the addon's server, ./ngtcp2-listener.ts).
 * Same streams, framing and close codes as ./connection.ts over quiche (shared in ./base.ts), but
 * the addon owns ngtcp2's timer and every packet: JS only sees stream bytes and events, one batch
 * per loop callback, and writes stream bytes that the addon packs into packets (several streams
 * per packet) once per loop turn.
 *
 *  - streams: ./stream.ts unchanged (END frame + FIN, resets with STREAM_RESET_CODE);
 *  - reads pause by withholding flow-control credit (`setReadPaused`) while the Duplex is full;
 *  - writes: the addon copies and keeps bytes until acknowledged; above QUIC_STREAM_HIGH_WATER
 *    unsent bytes a stream's write waits for the addon's WRITABLE event;
 *  - certificate (connector): GnuTLS verifies the chain against the CA (and the name when dialing
 *    one); the IP SAN and the CA pin are checked here after the handshake, as for quiche;
 *  - close codes, close reasons and dial failures read as those of quiche.
 */
import { debuglog } from 'node:util';
import { OxyError } from '../../../core/errors.js';
import { ANSWER_STATE, QUIC_STREAM_HIGH_WATER, QuicClose, QuicEvent, QuicPumpEvent, type NativeQuicInfo } from '../../native/index.js';
import { TunnelCloseCode } from '../../protocol/codes.js';
import { Http1Record } from '../../protocol/http1.js';
import { FLOW_OK_ANSWER } from '../../protocol/tcp-flows.js';
import type { AnswerPumpOptions, FdPump, FdPumpEvents, NativeDialer, TunnelConnection, TunnelRole } from '../types.js';
import { noteExternalBytes } from '../../util/gc.js';
import { truncateUtf8 } from '../common.js';
import { QuicConnectionBase } from './base.js';
import { STREAM_RESET_CODE } from './connection.js';
import { CRYPTO_ERROR_START, CRYPTO_ERROR_STOP, describeTransportError, type ClientVerification, type QuicDialFailure } from './errors.js';
import { FRAME_DATA } from './framing.js';
import { QuicStream, type NativeAnswers } from './stream.js';

const debug = debuglog('oxy:transport:quic');

const MAX_REASON_BYTES = 1024;
/**
 * A dial's keep-alive options set by the addon only once its flow lived a quarter to half the idle
 * time (four system calls less per short flow); OXY_DIAL_KEEPALIVE_LATE=0: at the dial, as before.
 */
const KEEPALIVE_LATE = process.env.OXY_DIAL_KEEPALIVE_LATE !== '0';

/** One connection of the addon: the client itself, or a server connection bound to its handle. */
export interface Ngtcp2Port {
  openStream(): number;
  write(id: number, data: Uint8Array | undefined, fin: boolean): number;
  shutdownStream(id: number, code: number): void;
  setReadPaused(id: number, paused: boolean): void;
  sendDatagram(data: Uint8Array): boolean;
  closeConnection(code: number, reason: string, transport: boolean): void;
  probe(): void;
  info(): NativeQuicInfo;
  peerCertificates(): Buffer[];
  /**
   * cpp/quic-pump.cc: a stream pumped to and from a TCP socket (the connector's origin sockets, both
   * ends' private flow sockets); `source` 1: `fd` is a dial's token (the client's), 2: a token of
   * the edge's TcpAcceptor (native/accept.ts), 3: such a token, taken when the flow's ANSWER is
   * `answer` byte for byte (FdPumpEvents.atAnswer).
   */
  attachPump?(id: number, fd: number, mode: number, source?: number, answer?: Uint8Array, open?: Uint8Array): boolean;
  /** The client's: a private flow's TCP connect by the addon (NativeDialer). */
  dial?(addr: Uint8Array, port: number, keepAliveMs: number, keepAliveLate?: boolean): number;
  closeDial?(token: number): void;
  takeDial?(token: number): number;
  admitOpen?(payload: Uint8Array, addr: Uint8Array, port: number, keepAliveMs: number, keepAliveLate: boolean, epoch: Int32Array, ok?: Uint8Array): void;
  shutPump?(id: number): void;
  resetPump?(id: number): void;
  pumpWrite?(id: number, data: Uint8Array, head: boolean): number;
  closePump?(id: number, reset?: boolean): number;
  armPumpHeads?(id: number, mode: number, frameLeft: number, bodyLeft: number): number;
  pumpRoute?(id: number, route: true | Uint8Array | undefined): void;
  /** The server's (cpp/quic-answer.cc): a stream's answers written to the edge's client socket. */
  attachAnswers?(id: number, fd: number, state: Float64Array, keepAlive: Uint8Array, extra: Uint8Array): boolean;
  armAnswer?(id: number, flags: number): boolean;
  closeAnswers?(id: number): void;
  readClient?(id: number, host: Uint8Array, client: Uint8Array): boolean;
  readClientStop?(id: number): Buffer;
  readBody?(id: number, left: number, chunkState?: Float64Array): boolean;
  /** Frees the addon's side without a packet. */
  close(): void;
}

export interface Ngtcp2ConnectionOptions {
  role: TunnelRole;
  /** The connector's checks of the edge certificate after the handshake. */
  verify?: ClientVerification;
  /** The addresses to report, when the addon's own form is not the one wanted (IPv4-mapped, a dialed name). */
  remote?: { address: string; port: number };
  local?: { address: string; port: number };
  /** Edge: the handshake completed (hand the connection to the listener's callback). */
  established?: (conn: Ngtcp2TunnelConnection) => void;
  /** The addon is done with the connection (closed by either side, or abandoned). */
  released?: (conn: Ngtcp2TunnelConnection) => void;
}

/** What the addon reads of a pumped stream (Ngtcp2Port.armPumpHeads). */
const PumpMode = { HEADS: 0, RECORDS: 1, PLAIN: 2, FLOWS: 3 } as const;

/** An http1 HEAD record (protocol/http1.ts) of `payload` in one stream DATA frame (./framing.ts). */
function headFrame(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(10 + payload.length);
  out[0] = FRAME_DATA;
  out.writeUInt32BE(5 + payload.length, 1);
  out[5] = Http1Record.HEAD;
  out.writeUInt32BE(payload.length, 6);
  payload.copy(out, 10);
  return out;
}

export class Ngtcp2TunnelConnection extends QuicConnectionBase implements TunnelConnection {
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Packets the kernel refused (ICMP unreachable, EPERM): the auto fallback's "UDP blocked" hint. */
  sendErrors = 0;
  lastSendError: Error | undefined;

  private readonly native: Ngtcp2Port;
  private readonly options: Ngtcp2ConnectionOptions;
  private released = false;
  private failure: QuicDialFailure | undefined;
  /** Streams pumped to a TCP socket by the addon, by stream id. */
  private readonly pumps = new Map<number, FdPumpEvents>();
  /** Pumped streams whose whole HEAD records the addon may hand over once JS's parsers are at a boundary. */
  private readonly pumpsToArm = new Set<number>();
  /** A flows pump the addon attached at its OPEN (FLOW_OPEN_PUMPED), while its onFlowOpen runs: attachPump with the token takes it. */
  private pumpThere: { id: number; token: number; taken: boolean } | undefined;
  /** Dials under way (NativeDialer), by token: what to call when each finished. */
  private readonly dials = new Map<number, (errno: number) => void>();
  /** TCP connects by the addon whose sockets its pumps take (the client's only). */
  readonly dialer: NativeDialer | undefined;
  readonly pumpsTokens: boolean;
  /** Streams whose answers the addon writes to an edge client socket, by stream id. */
  private readonly answers = new Map<number, { options: AnswerPumpOptions; state: Float64Array }>();

  /** `open` makes the addon's side, given the function its event batches go to. */
  constructor(open: (onEvents: (batch: Buffer) => void) => Ngtcp2Port, options: Ngtcp2ConnectionOptions) {
    super(options.role);
    this.options = options;
    this.native = open(this.onEvents);
    const info = this.native.info();
    this.localAddress = options.local?.address ?? info.localAddress.address;
    this.localPort = options.local?.port ?? info.localAddress.port;
    this.remoteAddress = options.remote?.address ?? info.remoteAddress.address;
    this.remotePort = options.remote?.port ?? info.remoteAddress.port;
    const native = this.native;
    this.pumpsTokens = native.attachPump !== undefined && native.resetPump !== undefined;
    this.dialer =
      native.dial && native.closeDial && native.takeDial
        ? {
            dial: (addr, port, keepAliveMs, done) => {
              const token = this.released ? -107 /* ENOTCONN */ : native.dial!(addr, port, keepAliveMs, KEEPALIVE_LATE);
              if (token > 0) this.dials.set(token, done);
              return token;
            },
            close: (token) => {
              this.dials.delete(token);
              if (!this.released) native.closeDial!(token);
            },
            take: (token) => {
              this.dials.delete(token);
              return this.released ? -1 : native.takeDial!(token);
            },
            adopt: (token, done) => {
              this.dials.set(token, done);
            },
            admitOpen: native.admitOpen
              ? (payload, addr, port, keepAliveMs, epoch) => {
                  if (!this.released) native.admitOpen!(payload, addr, port, keepAliveMs, KEEPALIVE_LATE, epoch, FLOW_OK_ANSWER);
                }
              : undefined,
          }
        : undefined;
  }

  // -------------------------------------------------------------------------- public API

  sendDatagram(data: Uint8Array): boolean {
    if (this.closeInfo || !this.isEstablished || data.length > this.maxDatagram || !this.native.sendDatagram(data)) {
      this.counters.datagramsDropped++;
      return false;
    }
    this.counters.datagramsSent++;
    return true;
  }

  /** Closes now for the application; on the wire, queued stream data goes first, then CONNECTION_CLOSE. */
  close(code: number = TunnelCloseCode.NO_ERROR, reason = ''): void {
    if (this.closeInfo) return;
    this.finish({ code, reason, remote: false });
    if (!this.released) this.native.closeConnection(code, truncateUtf8(reason, MAX_REASON_BYTES).toString('utf8'), false);
    // The addon closes by itself once its CONNECTION_CLOSE went out: nothing more to hear.
    this.options.released?.(this);
  }

  probe(): Promise<boolean> {
    if (this.closeInfo || !this.isEstablished) return Promise.resolve(false);
    this.native.probe();
    this.awaitingSince ||= performance.now();
    return new Promise((resolve) => this.probeWaiters.push(resolve));
  }

  /**
   * ngtcp2's path figures; `lost` counts packets with stream data declared lost (ngtcp2 0.12 keeps
   * no count of all packets). A client's own socket adds whether UDP GSO is still on and how many
   * messages carried several packets.
   */
  quicStats(): Pick<
    NativeQuicInfo,
    'lost' | 'sent' | 'recv' | 'rttMs' | 'cwnd' | 'gso' | 'gsoSends' | 'largestSend' | 'gro' | 'groReads' | 'counters' | 'pathPayload' | 'pmtud'
  > {
    if (this.released) return { lost: 0, sent: 0, recv: 0, rttMs: 0, cwnd: 0 };
    const info = this.native.info();
    return {
      lost: info.lost ?? 0,
      sent: info.sent ?? 0,
      recv: info.recv ?? 0,
      rttMs: info.rttMs ?? 0,
      cwnd: info.cwnd ?? 0,
      gso: info.gso,
      gsoSends: info.gsoSends,
      largestSend: info.largestSend,
      gro: info.gro,
      groReads: info.groReads,
      counters: info.counters,
      pathPayload: info.pathPayload,
      pmtud: info.pmtud,
    };
  }

  /** Streams the addon still holds: bytes not yet acknowledged, or not closed by ngtcp2 yet. */
  nativeStreams(): number {
    return this.released ? 0 : (this.native.info().streams ?? 0);
  }

  /** Drops the connection without a packet (a dial abandoned before the handshake, the listener's socket gone). */
  abandon(reason: string): void {
    this.finish({ code: TunnelCloseCode.TRANSPORT_LOST, reason, remote: false, error: new OxyError('OXY_ERR_TUNNEL_CLOSED', reason) });
    this.release();
  }

  // -------------------------------------------------------------------------- QuicStreamOwner

  flushStream(stream: QuicStream): boolean {
    if (this.closeInfo || stream.destroyed) return false;
    const pending = stream.pending;
    let unsent = 0;
    let bytes = 0;
    for (let i = 0; i < pending.length; i++) {
      const item = pending[i]!;
      bytes += item.buf.length;
      unsent = this.native.write(stream.id, item.buf, item.fin);
      if (unsent < 0) {
        stream.pending = [];
        stream.destroy(new OxyError('OXY_ERR_STREAM_RESET', `QUIC stream ${stream.id} takes no more data`));
        return false;
      }
      if (item.fin) stream.localEnded = true;
    }
    stream.pending = [];
    noteExternalBytes(bytes); // the addon copied them: JS's buffers are garbage now
    // The bytes are the addon's now; past its high-water mark the write waits for WRITABLE.
    return unsent <= QUIC_STREAM_HIGH_WATER;
  }

  attachPump(stream: QuicStream, fd: number, events: FdPumpEvents): FdPump | undefined {
    const native = this.native;
    if (!native.attachPump || !native.pumpWrite || !native.closePump || this.closeInfo || this.released) return undefined;
    if (events.flows && !native.resetPump) return undefined;
    const there = this.pumpThere;
    if (there && there.id === stream.id && there.token === fd && events.flows && events.atConnect && stream.frameLeft() === 0) {
      // Attached and armed by the addon at the OPEN, this flow's reader right after it (as
      // armPumps would leave it). Its connect's DIALED still comes to the dial's `done`.
      there.taken = true;
      if (debug.enabled) debug('stream %d: a flows pump attached by the addon at its OPEN', stream.id);
      this.pumps.set(stream.id, events);
      stream.handOver();
      events.handOver?.();
      return new Ngtcp2Pump(this, native, stream.id, events);
    }
    const source = events.atConnect ? 4 : events.dial ? 1 : events.atAnswer ? (events.earlyRead ? 5 : 3) : events.accepted ? 2 : 0;
    // Mode 3: a flows pump whose stream's next OPEN the addon reads once the flow is over (onFlowOpen).
    const mode = events.flows ? (stream.onFlowOpen && !events.atAnswer ? 3 : 2) : events.plain ? 1 : 0;
    if (!native.attachPump(stream.id, fd, mode, source, events.atAnswer ?? events.atConnect, events.atAnswer && events.open)) return undefined;
    // A connecting dial's `done` still hears its connect (DIALED).
    if (events.dial && !events.atConnect) this.dials.delete(fd);
    const id = stream.id;
    this.pumps.set(id, events);
    if ((events.plain || events.flows || (events.head && events.bodyLeft)) && native.armPumpHeads) this.pumpsToArm.add(id);
    // A flow's records may be the addon's at once (no batch of the stream's bytes on its way to JS);
    // one taken at its OPEN (atConnect) is armed after the batch, its readers at rest.
    if (events.flows && !events.atConnect) this.armPumps();
    return new Ngtcp2Pump(this, native, id, events);
  }

  /** @internal Ngtcp2Pump: whether the pump `events` is still the stream's and the addon's side lives. */
  pumpIs(id: number, events: FdPumpEvents): boolean {
    return this.pumps.get(id) === events && !this.released;
  }

  /** @internal Ngtcp2Pump.close(). */
  closePumpOf(id: number, events: FdPumpEvents, reset: boolean | undefined): number {
    if (this.pumps.get(id) !== events) return 0;
    this.pumps.delete(id);
    this.pumpsToArm.delete(id);
    // Released: the addon closed its pumps (a cut flow's socket reset: Conn::ClosePumps).
    return this.released ? 0 : this.native.closePump!(id, reset);
  }

  /** @internal Ngtcp2Pump.write(). */
  get isReleased(): boolean {
    return this.released;
  }

  attachAnswers(stream: QuicStream, fd: number, options: AnswerPumpOptions): NativeAnswers | undefined {
    const native = this.native;
    if (!native.attachAnswers || !native.armAnswer || !native.closeAnswers || this.closeInfo || this.released) return undefined;
    const id = stream.id;
    const state = new Float64Array(ANSWER_STATE.SLOTS);
    if (!native.attachAnswers(id, fd, state, Buffer.from(options.keepAlive, 'latin1'), Buffer.from(options.extra, 'latin1'))) return undefined;
    const entry = { options, state };
    this.answers.set(id, entry);
    return {
      state,
      arm: (flags) => !this.released && this.answers.get(id) === entry && native.armAnswer!(id, flags),
      read: native.readClient
        ? (host, client) =>
            !this.released && this.answers.get(id) === entry && native.readClient!(id, Buffer.from(host, 'latin1'), Buffer.from(client, 'latin1'))
        : undefined,
      readStop: () => (this.released || this.answers.get(id) !== entry ? Buffer.alloc(0) : native.readClientStop!(id)),
      readBody: native.readBody
        ? (left, chunkState) => !this.released && this.answers.get(id) === entry && native.readBody!(id, left, chunkState && Float64Array.from(chunkState))
        : undefined,
      close: () => {
        if (this.answers.get(id) !== entry) return;
        this.answers.delete(id);
        if (!this.released) native.closeAnswers!(id);
      },
    };
  }

  resumeRead(stream: QuicStream): void {
    if (!this.released) this.native.setReadPaused(stream.id, false);
  }

  streamDestroyed(stream: QuicStream, reset: boolean): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    if (this.answers.delete(stream.id) && !this.released) this.native.closeAnswers!(stream.id);
    if (reset && !this.closeInfo && !this.released) this.native.shutdownStream(stream.id, STREAM_RESET_CODE);
  }

  // -------------------------------------------------------------------------- events

  private readonly onEvents = (batch: Buffer): void => {
    for (let at = 0; at + 16 <= batch.length; ) {
      const length = batch.readUInt32LE(at + 4);
      this.onRecord(batch[at]!, batch[at + 1]!, batch.readDoubleLE(at + 8), batch.subarray(at + 16, at + 16 + length));
      at += 16 + length;
    }
    this.endBatch();
    noteExternalBytes(batch.length);
  };

  /** @internal one event record of the addon (the server's dispatcher calls this too). */
  onRecord(type: number, flag: number, id: number, data: Buffer): void {
    switch (type) {
      case QuicEvent.DATA:
        this.onData(id, data, flag === 1);
        break;
      case QuicEvent.HANDSHAKE:
        this.onEstablished();
        break;
      case QuicEvent.RESET:
        this.streams.get(id)?.abortedByPeer('reset', data.readDoubleLE(0));
        break;
      case QuicEvent.STOP_SENDING:
        this.streams.get(id)?.abortedByPeer('stopped', data.readDoubleLE(0));
        break;
      case QuicEvent.WRITABLE:
        this.streams.get(id)?.drained();
        break;
      case QuicEvent.DATAGRAM:
        this.counters.datagramsReceived++;
        this.datagramHandler?.(data);
        break;
      case QuicEvent.ANSWERED:
        this.answered();
        break;
      case QuicEvent.DATAGRAM_ROOM:
        this.maxDatagram = data.readDoubleLE(0);
        break;
      case QuicEvent.SEND_ERROR:
        this.sendErrors++;
        this.lastSendError = new Error(`UDP: errno ${data.readDoubleLE(0)}`);
        break;
      case QuicEvent.PUMP: {
        if (
          (flag >= QuicPumpEvent.ANSWER_DONE && flag <= QuicPumpEvent.ANSWER_FAILED) ||
          flag === QuicPumpEvent.ANSWER_OWN_DONE ||
          flag === QuicPumpEvent.ANSWER_OWN_COUNT ||
          flag === QuicPumpEvent.READ_BACK ||
          flag === QuicPumpEvent.BODY_END
        ) {
          this.onAnswer(id, flag, data);
          break;
        }
        if (flag === QuicPumpEvent.DIALED) {
          // `id` is a dial's token; it stays the addon's until a pump takes it or it is closed.
          const done = this.dials.get(id);
          this.dials.delete(id);
          done?.(data.readDoubleLE(0));
          break;
        }
        if (flag === QuicPumpEvent.FLOW_OPEN || flag === QuicPumpEvent.FLOW_OPEN_DIALED || flag === QuicPumpEvent.FLOW_OPEN_PUMPED) {
          // Dialled by the addon as it read the OPEN: the token is onFlowOpen's (it takes or closes it).
          const token = flag === QuicPumpEvent.FLOW_OPEN ? undefined : data.readDoubleLE(0);
          const payload = token === undefined ? data : data.subarray(8);
          const stream = this.streams.get(id);
          if (flag === QuicPumpEvent.FLOW_OPEN_PUMPED) {
            // Its pump is the addon's already: attachPump with this token takes it (#pumpThere).
            this.pumpThere = { id, token: token!, taken: false };
            const took = stream?.onFlowOpen?.(payload, token) === true && this.pumpThere.taken;
            this.pumpThere = undefined;
            if (!took) {
              // Not the flow JS made of it (a stream gone, a record refused): the records after the
              // OPEN were the pump's, so the stream cannot go on; it and the pump go (reset).
              if (!this.released) this.native.closePump!(id, true);
              stream?.destroy(new OxyError('OXY_ERR_STREAM_RESET', `QUIC stream ${id}: a flow pumped at its OPEN that JS did not take`));
            }
            break;
          }
          const onFlowOpen = stream?.onFlowOpen;
          if (token !== undefined && !onFlowOpen && !this.released) this.native.closeDial!(token);
          // Not taken by a pump at once: the stream's reader gets what followed the OPEN.
          if (!onFlowOpen?.(payload, token) && !this.released) this.native.closePump!(id);
          break;
        }
        const events = this.pumps.get(id);
        // A HEAD read by the addon for a pump closed earlier in this batch (its origin ended):
        // the stream's reader takes it, as the bytes it was (its parsers stand at a boundary).
        if (flag === QuicPumpEvent.HEAD && !events?.head) this.streams.get(id)?.receive(headFrame(data));
        if (!events) break;
        if (flag === QuicPumpEvent.ANSWER) events.answer(data.readDoubleLE(0));
        else if (flag === QuicPumpEvent.FAST_ANSWER) events.fastAnswer?.(data.readDoubleLE(0), data.length >= 16 ? data.readDoubleLE(8) : 1);
        else if (flag === QuicPumpEvent.FAST_START) events.fastStart?.(data.readDoubleLE(8));
        else if (flag === QuicPumpEvent.FAST_HEAD) events.fastHead?.(data.subarray(1), data[0] === 1);
        else if (flag === QuicPumpEvent.END) events.end(data.readDoubleLE(0));
        else if (flag === QuicPumpEvent.DRAIN) events.drain();
        else if (flag === QuicPumpEvent.HEAD) events.head?.(data);
        else if (flag === QuicPumpEvent.SHUT) events.shut?.();
        else if (flag === QuicPumpEvent.FLOW_ANSWERED) events.answered?.();
        else if (flag === QuicPumpEvent.EARLY_ERROR) events.earlyError?.(data.readDoubleLE(0));
        else if (flag === QuicPumpEvent.FLOW_DONE) {
          // The addon let the pump go (it lingers there until its socket is flushed): the stream's records are JS's again.
          this.pumps.delete(id);
          this.pumpsToArm.delete(id);
          events.flowDone?.();
        }
        break;
      }
      case QuicEvent.CLOSED:
        this.onClosed(flag, data.readDoubleLE(0), data.subarray(8).toString('utf8'));
        break;
      default:
        break; // STREAM_CLOSED, STREAMS_AVAILABLE: the open queue is served at the batch's end
    }
  }

  private onAnswer(id: number, flag: number, data: Buffer): void {
    const options = this.answers.get(id)?.options;
    if (!options) return;
    if (flag === QuicPumpEvent.ANSWER_DONE) options.done();
    else if (flag === QuicPumpEvent.ANSWER_OWN_DONE) options.ownDone?.(data.readDoubleLE(0), data.readDoubleLE(8), data.readDoubleLE(16) === 1);
    else if (flag === QuicPumpEvent.ANSWER_OWN_COUNT) options.ownCount?.(data.readDoubleLE(0), data.readDoubleLE(8), data.readDoubleLE(16));
    else if (flag === QuicPumpEvent.READ_BACK) options.readBack?.();
    else if (flag === QuicPumpEvent.BODY_END) options.bodyEnd?.(data.readDoubleLE(0));
    else if (flag === QuicPumpEvent.ANSWER_BROKEN) options.broken(data.toString('latin1', 1), data[0] !== 0, data[0] === 2);
    else if (flag === QuicPumpEvent.ANSWER_FAILED) options.failed(data.readDoubleLE(0));
  }

  /** @internal the records of one batch were all seen. */
  endBatch(): void {
    if (this.pumpsToArm.size > 0) this.armPumps();
    this.serveOpens();
  }

  /**
   * The addon takes whole HEAD records of pumped streams whose parsers here are between records,
   * or (`records`) every record from where the parsers here stand, unless one is half-read, or
   * (`plain`) every byte from where the frame parser stands.
   */
  private armPumps(): void {
    for (const id of this.pumpsToArm) {
      const events = this.pumps.get(id);
      const stream = this.streams.get(id);
      if (!events || !stream) {
        this.pumpsToArm.delete(id);
        continue;
      }
      const frameLeft = stream.frameLeft();
      const bodyLeft = events.plain ? 0 : events.bodyLeft?.();
      if (frameLeft === undefined || bodyLeft === undefined || this.released) continue;
      const mode = events.flows ? PumpMode.FLOWS : events.plain ? PumpMode.PLAIN : events.records ? PumpMode.RECORDS : PumpMode.HEADS;
      if (mode === PumpMode.HEADS && (frameLeft !== 0 || bodyLeft !== 0)) continue;
      const armed = this.native.armPumpHeads!(id, mode, frameLeft, bodyLeft);
      if (armed !== 0) this.pumpsToArm.delete(id);
      if (armed === 1 && mode !== PumpMode.HEADS) {
        stream.handOver();
        events.handOver?.();
      }
    }
  }

  private onData(id: number, data: Buffer, fin: boolean): void {
    let stream = this.streams.get(id);
    if (!stream) {
      // Ours, or a peer stream seen before: a stream we are done with.
      stream = this.adoptPeerStream(id);
      if (!stream) return;
    }
    if (stream.remoteEnded || stream.destroyed) return;
    // The addon disarmed its HEAD matching for a pumped stream when it gave these bytes here.
    if (this.pumps.has(id) && this.native.armPumpHeads) this.pumpsToArm.add(id);
    // The bytes an answer pump held for JS are read now: it may be armed again.
    const answers = this.answers.get(id);
    if (answers) answers.state[ANSWER_STATE.HELD] = 0;
    const paused = stream.readPaused;
    if (data.length > 0) {
      try {
        stream.receive(data);
      } catch (err) {
        stream.destroy(err as Error);
        return;
      }
    }
    if (fin) stream.receiveFin();
    if (!paused && stream.readPaused && !stream.remoteEnded) this.native.setReadPaused(id, true);
  }

  protected tryOpen(): QuicStream | undefined {
    if (!this.isEstablished || this.closeInfo) return undefined;
    const id = this.native.openStream();
    return id < 0 ? undefined : this.openLocal(id);
  }

  /** Handshake done: the connector checks ALPN, IP SAN and pin and releases the dialer; the edge hands it on. */
  private onEstablished(): void {
    if (this.isEstablished || this.closeInfo) return;
    const info = this.native.info();
    const err = this.role === 'connector' ? this.checkEdge(info.alpn, () => this.native.peerCertificates(), this.options.verify) : undefined;
    if (err) {
      this.native.closeConnection(CRYPTO_ERROR_START + 42 /* bad_certificate */, '', true);
      this.rejectHandshake(err);
      this.finish({ code: TunnelCloseCode.TRANSPORT_LOST, reason: err.message, remote: false, error: err });
      return;
    }
    this.isEstablished = true;
    this.maxDatagram = info.maxDatagramSize;
    debug('%s (ngtcp2) established with %s:%d', this.role, this.remoteAddress, this.remotePort);
    this.resolveHandshake();
    this.options.established?.(this);
  }

  /** The addon closed the connection (it tears its side down after this batch). */
  private onClosed(kind: number, code: number, reason: string): void {
    this.released = true;
    this.options.released?.(this);
    if (this.closeInfo) return;
    switch (kind) {
      case QuicClose.PEER_APPLICATION:
        this.failure = 'refused';
        this.finish({ code, reason, remote: true });
        return;
      case QuicClose.PEER_TRANSPORT: {
        const what = describeTransportError(code);
        const tls = code >= CRYPTO_ERROR_START && code <= CRYPTO_ERROR_STOP;
        // no_application_protocol: the edge speaks QUIC, but not our ALPN — a refusal, not a TLS failure.
        this.failure = tls && code !== CRYPTO_ERROR_START + 120 ? 'tls' : 'refused';
        const err = new OxyError('OXY_ERR_TUNNEL_CLOSED', `QUIC peer closed the connection: ${what}${reason ? ` (${reason})` : ''}`);
        this.finish({ code: code === 0 ? TunnelCloseCode.NO_ERROR : TunnelCloseCode.PROTOCOL_ERROR, reason: reason || what, remote: true, error: err });
        return;
      }
      case QuicClose.LOCAL_ERROR: {
        const tls = code >= CRYPTO_ERROR_START && code <= CRYPTO_ERROR_STOP;
        this.failure = tls ? 'tls' : 'closed';
        const message = `QUIC connection failed: ${describeTransportError(code)}${reason ? ` (${reason})` : ''}`;
        this.finish({ code: TunnelCloseCode.PROTOCOL_ERROR, reason: message, remote: false, error: new OxyError('OXY_ERR_TUNNEL_CLOSED', message) });
        return;
      }
      default: {
        const message =
          kind === QuicClose.STATELESS_RESET
            ? 'QUIC stateless reset: the peer no longer knows this connection'
            : this.isEstablished
              ? 'QUIC idle timeout: no packet from the peer'
              : 'QUIC handshake timed out';
        this.failure = kind === QuicClose.STATELESS_RESET ? 'refused' : 'timeout';
        this.finish({ code: TunnelCloseCode.TRANSPORT_LOST, reason: message, remote: false, error: new OxyError('OXY_ERR_TUNNEL_CLOSED', message) });
      }
    }
  }

  protected dialFailure(): QuicDialFailure {
    return this.failure ?? 'closed';
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.native.close();
    this.options.released?.(this);
  }
}

/** A stream's pump in the addon (FdPump): one object per pump, its methods on the prototype (no closures per flow). */
class Ngtcp2Pump implements FdPump {
  constructor(
    private readonly conn: Ngtcp2TunnelConnection,
    private readonly native: Ngtcp2Port,
    private readonly id: number,
    private readonly events: FdPumpEvents,
  ) {}

  write(data: Uint8Array, head: boolean): boolean {
    const unsent = this.conn.isReleased ? -1 : this.native.pumpWrite!(this.id, data, head);
    return unsent <= QUIC_STREAM_HIGH_WATER;
  }

  close(reset?: boolean): number {
    return this.conn.closePumpOf(this.id, this.events, reset);
  }

  end(): void {
    if (this.conn.pumpIs(this.id, this.events)) this.native.shutPump?.(this.id);
  }

  reset(): void {
    if (this.conn.pumpIs(this.id, this.events)) this.native.resetPump?.(this.id);
  }

  route(key: true | Uint8Array | undefined): void {
    if (this.conn.pumpIs(this.id, this.events)) this.native.pumpRoute?.(this.id, key);
  }
}
