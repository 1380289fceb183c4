/**
 * The connector's side of a `tcp-flows` stream (protocol/tcp-flows.ts): each OPEN is a private
 * TCP flow, admitted and dialled as a `tcp` stream's would be; its ANSWER goes before any other
 * record of the flow, and the next OPEN may come once the flow ended both ways. The stream ends
 * when the edge ends it (an idle stream it no longer keeps).
 */
import { Socket } from 'node:net';
import { debuglog } from 'node:util';
import { OxyError } from '../../core/errors.js';
import { encodeResponseHeader, ResponseStatus, type StreamRequestHeader } from '../protocol/stream-header.js';
import { decodeFlowHeader, FLOW_OK_ANSWER, FlowLink, FlowRecord, FlowRecordParser, writeFlowRecord, type FlowRecordSink } from '../protocol/tcp-flows.js';
import { PumpedFlow } from '../transport/flow-pump.js';
import { revealResets } from '../native/index.js';
import type { TunnelStream } from '../transport/types.js';
import { FLOW_UNSENT } from '../util/pump.js';

const debug = debuglog('oxy:connector:tcp-flows');

/**
 * A private TCP flow's dialled socket is pumped by the addon where the stream can (QUIC on ngtcp2):
 * a `tcp` stream's plainly (private.ts), a `tcp-flows` stream's flow with its records read and
 * written there. Any OXY_QUIC_PUMP value (`records`, `heads`, `fd`, `0`) keeps them in JS.
 */
export const PUMP_FLOWS = (process.env.OXY_QUIC_PUMP ?? '') === '';
/**
 * A dial's socket is the pump's from the flow's OPEN on, and the addon answers OK at the connect
 * (PumpedFlow.start `connecting`: no JS turn for the connect); OXY_FLOW_AT_CONNECT=0: JS answers
 * and starts the pump when it hears the connect.
 */
const AT_CONNECT = process.env.OXY_FLOW_AT_CONNECT !== '0';
/**
 * With AT_CONNECT, the stream's OPENs between flows are read by the addon and handed over whole
 * (TunnelStream.onFlowOpen: not through the Duplex and the record reader); OXY_FLOW_OPEN_NATIVE=0:
 * every OPEN through them.
 */
const OPEN_NATIVE = process.env.OXY_FLOW_OPEN_NATIVE !== '0';

/** A private flow's destination; `addr`: the host's 4 or 16 bytes, once the off-ramp's check parsed them. */
export interface PrivateDestination {
  host: string;
  port: number;
  addr?: Uint8Array;
}

/** What the flows need of the private off-ramp (private.ts). */
export interface FlowOfframp {
  check(header: StreamRequestHeader): Promise<PrivateDestination | { status: number; why: string }>;
  /** check() at once, or undefined when it would have to wait (the edge's routes not here yet). */
  checkNow?(header: StreamRequestHeader): PrivateDestination | { status: number; why: string } | undefined;
  dial(dest: PrivateDestination): Promise<Socket>;
  /** dial() by the stream's transport: `done` gets a NativeDialer token (no Node socket) or the error, once; false where it cannot. */
  dialNative?(stream: TunnelStream, dest: PrivateDestination, done: (token: number, err?: Error) => void, started?: (token: number) => void): boolean;
  /** An OPEN (its payload) check() admitted to `dest`: the transport may dial the next of these bytes itself as it reads it. */
  admitOpen?(stream: TunnelStream, payload: Buffer, dest: PrivateDestination): void;
  /** As dialNative(), for the dial the transport made as it read the OPEN (its token): false where it cannot. */
  adoptDial?(
    stream: TunnelStream,
    dest: PrivateDestination,
    token: number,
    done: (token: number, err?: Error) => void,
    started?: (token: number) => void,
  ): boolean;
  flowStarted(): void;
  flowEnded(): void;
}

/**
 * OPEN payloads decoded, by their bytes: the edge writes one OPEN per (vnet, tenant, destination),
 * the same bytes for each of its flows (decoding each cost ~3 % of the connector's main thread per
 * new connection). The headers are shared: nothing changes them. Bounded: payloads up to
 * OPEN_KEPT_BYTES (an OPEN is ~100), cleared when full.
 */
const openHeaders = new Map<string, StreamRequestHeader>();
const OPEN_HEADERS_MAX = 1024;
const OPEN_KEPT_BYTES = 512;

function decodeOpen(payload: Buffer): StreamRequestHeader {
  if (payload.length > OPEN_KEPT_BYTES) return decodeFlowHeader(payload, 'request');
  const key = payload.toString('latin1');
  let header = openHeaders.get(key);
  if (header) return header;
  header = decodeFlowHeader(payload, 'request');
  if (openHeaders.size >= OPEN_HEADERS_MAX) openHeaders.clear();
  openHeaders.set(key, header);
  return header;
}

export class TcpFlowServer implements FlowRecordSink {
  readonly done: Promise<void>;
  readonly #parser = new FlowRecordParser(this, FlowRecord.OPEN);
  #link: FlowLink | PumpedFlow | undefined;
  /** The flow (of `link`) pumped from its OPEN, its dial still connecting (the addon answers OK at the connect). */
  #connecting: { link: FlowLink; flow: PumpedFlow } | undefined;
  #answered = true;
  #finish!: () => void;
  #over = false;
  /** A flow's end, told to the off-ramp (its count): made once per stream, not per flow. */
  readonly #flowEnded = (): void => this.offramp.flowEnded();
  /** The dial the transport made as it read the OPEN being handled (onFlowOpen's token), until #dial takes it. */
  #openDial: number | undefined;

  constructor(
    private readonly stream: TunnelStream,
    private readonly offramp: FlowOfframp,
  ) {
    this.done = new Promise((resolve) => (this.#finish = resolve));
    if (PUMP_FLOWS && AT_CONNECT && OPEN_NATIVE) stream.onFlowOpen = (payload, token) => this.#opened(payload, token);
    stream.on('data', (chunk: Buffer) => {
      try {
        this.#parser.push(chunk);
      } catch {
        // Hostile or broken input: the stream (and its flow) goes, reset.
        this.#stop(true);
      }
    });
    stream.on('end', () => this.#stop(false));
    stream.on('error', () => this.#stop(true));
    stream.on('close', () => this.#stop(true));
  }

  header(_type: number, payload: Buffer): void {
    if (this.#link && !this.#link.released) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'A tcp-flows OPEN before the previous flow ended');
    const header = decodeOpen(payload);
    if (header.kind !== 'tcp') throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `A tcp-flows OPEN of kind ${header.kind}`);
    this.offramp.flowStarted();
    const link = new FlowLink(this.stream, FLOW_UNSENT, FLOW_UNSENT, this.#flowEnded);
    this.#link = link;
    this.#answered = false;
    // No await (a promise and a microtask turn per flow) once the routes are known.
    const dest = this.offramp.checkNow?.(header);
    const token = this.#openDial;
    this.#openDial = undefined;
    if (token !== undefined) {
      // The transport dialled it already: admitted before, and the routes unchanged since (checked
      // again here all the same: refused, the dial is closed, never used).
      if (dest && 'host' in dest && this.#adopt(dest, link, token)) return;
      this.stream.dialer?.close(token);
    } else if (dest && 'host' in dest) this.offramp.admitOpen?.(this.stream, payload, dest);
    if (dest) this.#dial(dest, link);
    else void this.offramp.check(header).then((d) => this.#dial(d, link));
  }

  /**
   * An OPEN the transport read (TunnelStream.onFlowOpen): true when its flow went to a pump at
   * once. `token`: its dial, made by the transport as it read it (OffRamp.admitOpen).
   */
  #opened(payload: Buffer, token?: number): boolean {
    if (debug.enabled) debug('stream %d: an OPEN read by the addon%s', this.stream.id, token === undefined ? '' : ', dialled there');
    this.#openDial = token;
    try {
      this.header(FlowRecord.OPEN, payload);
    } catch {
      // As for a record the reader refuses: the stream (and its flow) goes, reset.
      this.#stop(true);
      return true;
    } finally {
      // Not taken (a record refused before the check): the dial goes.
      if (this.#openDial !== undefined) this.stream.dialer?.close(this.#openDial);
      this.#openDial = undefined;
    }
    return this.#connecting !== undefined && this.#link === this.#connecting.flow;
  }

  /** The flow goes on with the dial the transport made at its OPEN: false where it cannot (the dial is the caller's to close). */
  #adopt(dest: PrivateDestination, link: FlowLink, token: number): boolean {
    return (
      PUMP_FLOWS &&
      this.offramp.adoptDial?.(
        this.stream,
        dest,
        token,
        (t, err) => this.#dialled(link, err ?? t),
        AT_CONNECT ? (t) => this.#pumpAtConnect(link, t) : undefined,
      ) === true
    );
  }

  #dial(dest: PrivateDestination | { status: number; why: string }, link: FlowLink): void {
    if (link.released) return;
    if (!('host' in dest)) return this.#refuse(link, dest.status, dest.why);
    // Where the transport dials, the flow never has a Node socket (the pump takes the dial's).
    if (
      PUMP_FLOWS &&
      this.offramp.dialNative?.(
        this.stream,
        dest,
        (token, err) => this.#dialled(link, err ?? token),
        AT_CONNECT ? (token) => this.#pumpAtConnect(link, token) : undefined,
      )
    )
      return;
    this.offramp.dial(dest).then(
      (socket) => this.#dialled(link, socket),
      (err: Error) => this.#dialled(link, err),
    );
  }

  /** The dial under way is the pump's now (its connect answers the flow there); else it stays the dial's. */
  #pumpAtConnect(link: FlowLink, token: number): void {
    if (link.released || this.#over) return;
    const flow = PumpedFlow.start(this.stream, token, this.#parser, () => link.handOff()!, this.#flowEnded, true);
    if (!flow) return;
    this.#link = flow;
    this.#connecting = { link, flow };
  }

  #dialled(link: FlowLink, socket: Socket | number | Error): void {
    const connecting = this.#connecting?.link === link ? this.#connecting.flow : undefined;
    if (connecting) {
      this.#connecting = undefined;
      // Connected: the addon wrote the OK ANSWER and pumps. Failed (or timed out): refused here,
      // unless the flow is over already (answered for a RESET before it, or the stream gone).
      if (!(socket instanceof Error)) this.#answered = true;
      else if (!connecting.released && !this.#answered && !this.#over) {
        this.#answer(ResponseStatus.DIAL_FAILED, socket.message);
        connecting.reset();
      }
      return;
    }
    if (socket instanceof Error) {
      if (!link.released) this.#refuse(link, ResponseStatus.DIAL_FAILED, socket.message);
      return;
    }
    const dialer = this.stream.dialer;
    // The edge reset the flow meanwhile (its answer and RESET went): nothing is written any more.
    if (link.released || this.#over) return void (typeof socket === 'number' ? dialer?.close(socket) : socket.destroy());
    this.#answer(ResponseStatus.OK, '');
    // The socket was just dialled (it has read nothing); the edge's DATA and END that came meanwhile go to the pump.
    const pumped = PUMP_FLOWS && PumpedFlow.start(this.stream, socket, this.#parser, () => link.handOff()!, this.#flowEnded);
    if (pumped) {
      this.#link = pumped;
      return;
    }
    // The stream cannot pump now (bytes of ours still wait for credit): a dial's socket becomes Node's.
    if (typeof socket !== 'number') return link.attach(socket);
    const taken = new Socket({ fd: dialer!.take(socket), allowHalfOpen: true, readable: true, writable: true });
    revealResets(taken);
    link.attach(taken);
  }

  #answer(status: number, message: string): void {
    this.#answered = true;
    writeFlowRecord(this.stream, FlowRecord.ANSWER, status === ResponseStatus.OK ? FLOW_OK_ANSWER : encodeResponseHeader({ status, message, metadata: [] }));
  }

  #refuse(link: FlowLink, status: number, why: string): void {
    this.#answer(status, why);
    link.abort();
  }

  // Between flows (after this side finished one), a late RESET of the edge's is dropped.
  data(bytes: Buffer): void {
    this.#link?.data(bytes);
  }

  end(): void {
    this.#link?.end();
  }

  /** A RESET before the answer is answered first: the edge reads nothing of a flow before its ANSWER. */
  reset(): void {
    const link = this.#link;
    if (!link || link.released) return;
    if (!this.#answered) this.#answer(ResponseStatus.DIAL_FAILED, 'The flow was reset before it was answered');
    link.reset();
  }

  #stop(reset: boolean): void {
    if (this.#over) return;
    this.#over = true;
    const link = this.#link;
    if (link && !link.released) {
      this.offramp.flowEnded();
      link.kill();
    }
    if (reset) this.stream.destroy();
    else this.stream.end();
    this.#finish();
  }
}
