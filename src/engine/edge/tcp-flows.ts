/**
 * The edge's side of `tcp-flows` streams (protocol/tcp-flows.ts): per connector connection, the
 * streams that carried a private TCP flow are kept open and the next flow goes on one of them,
 * as an OPEN record, instead of on a new `tcp` stream (Node's HTTP/2 `request()`, HEADERS, the
 * stream's close, and the connector's `ServerHttp2Stream`: a quarter of each side's CPU per new
 * connection). Only with connectors whose registration listed TCP_FLOWS_FEATURE.
 */
import type { Socket } from 'node:net';
import { isOxyError, OxyError } from '../../core/errors.js';
import { AcceptedTcp } from '../native/index.js';
import { encodeRequestHeader, ResponseStatus } from '../protocol/stream-header.js';
import { decodeFlowHeader, FlowLink, FlowRecord, FlowRecordParser, writeFlowRecord, type FlowRecordSink } from '../protocol/tcp-flows.js';
import { PumpedFlow } from '../transport/flow-pump.js';
import type { TunnelConnection, TunnelStream } from '../transport/types.js';
import type { LiveConnection } from './registry.js';
import { soon } from '../util/soon.js';

/** Idle streams kept per connection (more flows at once open new streams; these end when released). */
export const MAX_IDLE_FLOW_STREAMS = 64;
/** An idle stream unused this long is ended. */
const IDLE_MS = 15_000;
/**
 * A flow the connector has not answered in this long takes its stream down with it (checked every
 * sixth of it: one interval for all flows, not a timer each, which cost ~1 % of the edge's main
 * thread per new connection).
 */
const ANSWER_TIMEOUT_MS = 60_000;

const STREAM_HEADER = encodeRequestHeader({ kind: 'tcp-flows', destination: '', metadata: [] });

/**
 * Where reused streams are allowed: OXY_TCP_FLOWS=0 never (a stream per flow, as before: for A/B
 * runs), =http2 over HTTP/2 only (session 9's default); by default over both (the connector's
 * QUIC pump reads and writes a flow's records natively).
 */
const MODE = process.env.OXY_TCP_FLOWS === '0' ? 'off' : process.env.OXY_TCP_FLOWS === 'http2' ? 'http2' : 'all';
/**
 * An accepted connection's pump starts in the addon at the flow's OK ANSWER (PumpedFlow.atAnswer:
 * no JS turn for the ANSWER); OXY_FLOW_AT_ANSWER=0: the ANSWER comes to JS, which starts the pump.
 */
const AT_ANSWER = process.env.OXY_FLOW_AT_ANSWER !== '0';
/** With AT_ANSWER, the accepted connection's first chunk is read and written as DATA by the addon too; OXY_FLOW_EARLY_NATIVE=0: by JS. */
const EARLY_NATIVE = process.env.OXY_FLOW_EARLY_NATIVE !== '0';
/** With AT_ANSWER, the flow's OPEN is written by the addon in the call that registers the pump; OXY_FLOW_OPEN_AT_ACCEPT=0: by JS before it. */
const OPEN_AT_ACCEPT = process.env.OXY_FLOW_OPEN_AT_ACCEPT !== '0';

export interface TcpFlowOptions {
  /** Socket → stream: the socket pauses above this many bytes queued on the stream. */
  unsent: number;
  /** Stream → socket: the stream pauses above this many bytes queued on the socket. */
  returnUnsent: number;
  /** The first chunk goes before the connector's answer (see ip-path.ts EarlyChunk). */
  early: boolean;
  /** Answered flows' sockets go to the transport's pump where the stream has one (QUIC on ngtcp2). */
  pump: boolean;
}

export class TcpFlowStreams {
  /** Flows carried on a stream that carried one before, and on a stream opened for them. */
  readonly counters = { reused: 0, opened: 0 };
  readonly #idle = new Map<TunnelConnection, FlowStream[]>();
  #sweep: NodeJS.Timeout | undefined;
  /** Streams whose flow waits for its ANSWER, by when it was asked. */
  readonly #unanswered = new Set<FlowStream>();
  #answerSweep: NodeJS.Timeout | undefined;

  constructor(private readonly o: TcpFlowOptions) {}

  /** Whether flows to this connection ride reused streams. */
  serves(live: LiveConnection): boolean {
    return live.tcpFlows === true && MODE !== 'off' && (MODE === 'all' || live.conn.protocol === 'http2');
  }

  /**
   * Carries `socket` (paused; or a connection the addon accepted, where the connection's streams
   * pump by token: TunnelConnection.pumpsTokens) as a flow with request header `open` (an encoded
   * header of kind `tcp`, not written to: it may be shared) on an idle stream of `live`, or a new
   * one. `owner` hears of the flow with `ctx` (made once by the caller: no closures per flow).
   */
  carry<C>(live: LiveConnection, open: Buffer, socket: Socket | AcceptedTcp, owner: FlowOwner<C>, ctx: C): void {
    const idle = this.#idle.get(live.conn);
    const ready = idle?.pop();
    if (ready) {
      live.idleStreams = idle!.length;
      this.counters.reused++;
      return ready.start(socket, open, owner as FlowOwner<unknown>, ctx);
    }
    this.counters.opened++;
    live.conn.openStream().then(
      (stream) => {
        if (socket.destroyed) {
          // The client left while the stream opened: keep it for the next flow.
          stream.write(STREAM_HEADER);
          return this.release(live, new FlowStream(stream, live, this.o, this));
        }
        stream.write(STREAM_HEADER);
        new FlowStream(stream, live, this.o, this).start(socket, open, owner as FlowOwner<unknown>, ctx);
      },
      (err: Error) => {
        owner.failed(err, ctx);
        socket.resetAndDestroy();
      },
    );
  }

  /** `fs` sent an OPEN: it dies if no ANSWER comes within ANSWER_TIMEOUT_MS. */
  waitAnswer(fs: FlowStream): void {
    this.#unanswered.add(fs);
    this.#answerSweep ??= setInterval(() => {
      const now = performance.now();
      for (const waiting of this.#unanswered) if (now - waiting.askedAt >= ANSWER_TIMEOUT_MS) waiting.unanswered(ANSWER_TIMEOUT_MS);
    }, ANSWER_TIMEOUT_MS / 6).unref();
  }

  answered(fs: FlowStream): void {
    this.#unanswered.delete(fs);
  }

  /** A stream whose flow ended: idle for the next one, or ended. */
  release(live: LiveConnection, fs: FlowStream): void {
    if (fs.dead) return;
    let idle = this.#idle.get(live.conn);
    if (live.draining || live.conn.isClosed || (idle && idle.length >= MAX_IDLE_FLOW_STREAMS)) return fs.close();
    if (!idle) {
      this.#idle.set(live.conn, (idle = []));
      // A draining connector gets no new flows: its idle streams end at once.
      (live.onDrain ??= new Set()).add(() => this.#closeIdle(live.conn, 0));
      live.conn.closed.then(() => this.#closeIdle(live.conn, 0));
    }
    fs.idleSince = performance.now();
    live.idleStreams = idle.push(fs);
    this.#sweep ??= setInterval(() => {
      for (const conn of this.#idle.keys()) this.#closeIdle(conn, IDLE_MS);
    }, IDLE_MS / 3).unref();
  }

  /** Ends the idle streams of `conn` unused for `age` ms (oldest first: the list is LIFO). */
  #closeIdle(conn: TunnelConnection, age: number): void {
    const idle = this.#idle.get(conn);
    if (!idle?.length) return;
    const now = performance.now();
    let n = 0;
    while (n < idle.length && now - idle[n]!.idleSince >= age) idle[n++]!.close();
    if (n > 0) idle[0]!.live.idleStreams = idle.length - n;
    idle.splice(0, n);
    if (conn.isClosed) this.#idle.delete(conn);
  }

  /** Removes a stream that died while idle. */
  forget(conn: TunnelConnection, fs: FlowStream): void {
    const idle = this.#idle.get(conn);
    const i = idle?.indexOf(fs) ?? -1;
    if (i < 0) return;
    idle!.splice(i, 1);
    fs.live.idleStreams = idle!.length;
  }

  close(): void {
    clearInterval(this.#sweep);
    clearInterval(this.#answerSweep);
    for (const conn of [...this.#idle.keys()]) this.#closeIdle(conn, 0);
  }
}

/** Who carries a flow (TcpFlowStreams.carry), told with the flow's `ctx`. */
export interface FlowOwner<C> {
  /** Why the flow could not start (its socket is then reset). */
  failed(err: Error, ctx: C): void;
  /** The flow's socket went to the transport's pump: `end.destroy()` ends the flow (and its stream) instead of the socket's destroy(). */
  pumped?(end: PumpedEnd, ctx: C): void;
}

/**
 * The end of a flow a pump carries, for whoever would have destroyed its socket (the flow table,
 * which keeps it through the flow's linger after both FINs). It names the flow by its stream and
 * turn, not by its PumpedFlow: that (with its pump's events and the accepted connection) is garbage
 * once the flow is over, instead of living on with the table's entry and being promoted.
 */
export class PumpedEnd {
  constructor(
    private readonly fs: FlowStream,
    private readonly turn: number,
  ) {}

  destroy(): void {
    this.fs.endPumped(this.turn);
  }
}

/** One reused stream: its records go to the flow whose turn it is. */
class FlowStream implements FlowRecordSink {
  readonly #parser = new FlowRecordParser(this, FlowRecord.ANSWER);
  #link: FlowLink | PumpedFlow | undefined;
  /** The accepted connection's pump that starts at the OK ANSWER, until the addon says it did. */
  #atAnswer: PumpedFlow | undefined;
  #owner: FlowOwner<unknown> | undefined;
  #ctx: unknown;
  #answered = true;
  #socket: Socket | AcceptedTcp | undefined;
  dead = false;
  idleSince = 0;
  /** When the current flow's OPEN went (TcpFlowStreams.waitAnswer). */
  askedAt = 0;
  /** Flows started on the stream: the current one's number (PumpedEnd). */
  #turn = 0;
  // Made once per stream, not per flow (the stream carries many).
  readonly #doneCb = (): void => this.#done();
  readonly #answeredCb = (flow: PumpedFlow): void => this.#answeredThere(flow);
  readonly #earlyErrorCb = (): void => void this.#socket?.destroy();

  constructor(
    private readonly stream: TunnelStream,
    readonly live: LiveConnection,
    private readonly o: TcpFlowOptions,
    private readonly owner: TcpFlowStreams,
  ) {
    stream.on('data', (chunk: Buffer) => {
      try {
        this.#parser.push(chunk);
      } catch (err) {
        this.#die(err as Error);
      }
    });
    stream.on('error', (err) => this.#die(err));
    stream.on('end', () => this.#die(new OxyError('OXY_ERR_TUNNEL_CLOSED', 'The connector ended the tcp-flows stream')));
    stream.on('close', () => this.#die(new OxyError('OXY_ERR_TUNNEL_CLOSED', 'The tcp-flows stream closed')));
  }

  start(socket: Socket | AcceptedTcp, open: Buffer, owner: FlowOwner<unknown>, ctx: unknown): void {
    const link = new FlowLink(this.stream, this.o.unsent, this.o.returnUnsent, this.#doneCb);
    this.#link = link;
    this.#turn++;
    this.#owner = owner;
    this.#ctx = ctx;
    this.#answered = false;
    this.#socket = socket;
    this.askedAt = performance.now();
    this.owner.waitAnswer(this);
    const accepted = socket instanceof AcceptedTcp;
    // An accepted connection's pump at the ANSWER writes the OPEN where it registers (#startAccepted).
    const openThere = accepted && OPEN_AT_ACCEPT && AT_ANSWER && this.o.pump;
    if (!openThere) writeFlowRecord(this.stream, FlowRecord.OPEN, open);
    if (accepted) this.#startAccepted(socket, link, openThere ? open : undefined);
    else link.attach(socket, this.o.early ? 'one' : 'shut');
  }

  /**
   * A connection the addon holds until the ANSWER (its pump takes it then): its first chunk goes
   * as early DATA, read by the addon; the socket-less link writes the flow's RESET if it ends first.
   */
  #startAccepted(conn: AcceptedTcp, link: FlowLink, open: Buffer | undefined): void {
    // Closed from here (the flow table ended the flow: idle, the device gone): as a socket's close;
    // a pump that started at the ANSWER meanwhile (not heard of yet) is cut as a pumped flow is.
    conn.onClose = () => {
      if (this.#link !== link) return;
      if (this.#stopAtAnswer()) this.#endedByEdge();
      else link.abort();
    };
    if (AT_ANSWER && this.o.pump)
      this.#atAnswer = PumpedFlow.atAnswer(
        this.stream,
        conn,
        this.#parser,
        this.#answeredCb,
        this.#doneCb,
        // Its first read failed: as for JS's read below.
        this.o.early && EARLY_NATIVE ? this.#earlyErrorCb : undefined,
        open,
      );
    // No pump to register it: the OPEN is written here, as without one.
    if (open && !this.#atAnswer) writeFlowRecord(this.stream, FlowRecord.OPEN, open);
    if (!this.o.early || this.#atAnswer?.readsEarly) return;
    conn.readFirst((chunk, errno) => {
      if (this.#link !== link || link.released) return;
      if (chunk) {
        writeFlowRecord(this.stream, FlowRecord.DATA, chunk);
        // Held here (no credit): the pump's bytes must not pass it, so JS starts the pump.
        if (this.stream.writableLength > 0) this.#stopAtAnswer();
      } else if (errno) conn.destroy();
      else {
        // Its end: a socket reads it again once open, and the link ends the flow as for any socket.
        this.#stopAtAnswer();
        link.attach(this.#socketOf(conn), 'shut');
      }
    });
  }

  /** No pump at the ANSWER after all; true when it had started (the flow is cut with it). */
  #stopAtAnswer(): boolean {
    const flow = this.#atAnswer;
    this.#atAnswer = undefined;
    return flow?.cancel() ?? false;
  }

  /** The addon read the OK ANSWER and its pump took the accepted connection: the flow is the pump's. */
  #answeredThere(flow: PumpedFlow): void {
    if (this.#atAnswer !== flow) return;
    this.#atAnswer = undefined;
    this.#answered = true;
    this.owner.answered(this);
    if (this.#socket instanceof AcceptedTcp) this.#socket.onClose = undefined;
    this.#pumpedBy(flow);
  }

  /** The accepted connection becomes a net.Socket (something needs one). */
  #socketOf(conn: AcceptedTcp): Socket {
    conn.onClose = undefined;
    const socket = conn.socket();
    socket.on('error', ignore);
    this.#socket = socket;
    return socket;
  }

  header(_type: number, payload: Buffer): void {
    // Before its answer a flow's link is always a FlowLink (a pump starts at the answer).
    const link = this.#link as FlowLink | undefined;
    if (this.#answered || !link) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'A tcp-flows ANSWER with no flow waiting for one');
    const answer = decodeFlowHeader(payload, 'response');
    // Not the OK answer the addon waited for (or a pump it could not start): JS's, as without it.
    this.#stopAtAnswer();
    this.#answered = true;
    this.owner.answered(this);
    const socket = this.#socket!;
    if (answer.status !== ResponseStatus.OK) {
      const why = `The connector could not reach the flow's destination: ${answer.message}`;
      if (!socket.destroyed) this.#owner?.failed(new OxyError('OXY_ERR_DIAL_FAILED', why), this.#ctx);
      if (socket instanceof AcceptedTcp) socket.onClose = undefined;
      socket.resetAndDestroy();
      link.abort();
      return;
    }
    if (socket instanceof AcceptedTcp) {
      socket.onClose = undefined;
      if (!(this.o.pump && this.stream.pumpTo)) return link.attach(this.#socketOf(socket));
      const held = new FlowLink(this.stream, this.o.unsent, this.o.returnUnsent, this.#doneCb);
      this.#link = held;
      soon(() => this.#pumpAccepted(socket, held));
      return;
    }
    const taken = this.o.pump && this.stream.pumpTo ? link.takeSocket() : undefined;
    if (taken) {
      // The pump starts once this batch of records is read (the reader then stands where the
      // addon takes over); meanwhile a link without a socket keeps what the connector sends.
      const held = new FlowLink(this.stream, this.o.unsent, this.o.returnUnsent, this.#doneCb);
      this.#link = held;
      soon(() => this.#pump(taken, held));
      return;
    }
    link.open();
  }

  /** The answered flow's socket to the transport's pump, with what `held` kept; else `held` takes the socket. */
  #pump(socket: Socket, held: FlowLink): void {
    // Reset or killed meanwhile (its RESET went, or the stream died): the socket is reset too.
    if (this.#link !== held || held.released) return void socket.resetAndDestroy();
    const flow = PumpedFlow.start(this.stream, socket, this.#parser, () => held.handOff()!, this.#doneCb);
    if (!flow) return held.attach(socket);
    this.#pumpedBy(flow);
  }

  /** The flow is `flow`'s, the transport's pump: the flow table's end of it (idle, the device gone) ends it here, with its stream. */
  #pumpedBy(flow: PumpedFlow): void {
    this.#link = flow;
    this.#owner?.pumped?.(new PumpedEnd(this, this.#turn), this.#ctx);
  }

  /**
   * @internal PumpedEnd.destroy(): the flow table ended the stream's flow `turn`; if the stream still
   * carries it, the stream goes with it. Within a turn, once pumped, the link is that flow's pump
   * until the flow is done or the stream dies (then undefined).
   */
  endPumped(turn: number): void {
    if (turn === this.#turn && this.#link instanceof PumpedFlow) this.#endedByEdge();
  }

  #endedByEdge(): void {
    this.#die(new OxyError('OXY_ERR_TUNNEL_CLOSED', 'The private TCP flow was ended by the edge'));
  }

  /** The answered flow's accepted connection to the transport's pump (as #pump for a socket). */
  #pumpAccepted(conn: AcceptedTcp, held: FlowLink): void {
    if (this.#link !== held || held.released) return conn.resetAndDestroy();
    // The flow ended meanwhile (the table closed it): RESET, as for a socket closed then.
    if (conn.destroyed) return held.abort();
    const flow = PumpedFlow.start(this.stream, conn, this.#parser, () => held.handOff()!, this.#doneCb);
    if (!flow) return held.attach(this.#socketOf(conn));
    this.#pumpedBy(flow);
  }

  // Before the answer, DATA, END and RESET are the previous flow's last words (a RESET that
  // crossed this side's terminator): the connector answers every OPEN before anything else.
  data(bytes: Buffer): void {
    if (this.#answered) this.#link?.data(bytes);
  }

  end(): void {
    if (this.#answered) this.#link?.end();
  }

  reset(): void {
    if (this.#answered) this.#link?.reset();
  }

  #done(): void {
    this.#atAnswer = undefined;
    this.#link = undefined;
    this.#owner = undefined;
    this.#ctx = undefined;
    this.#socket = undefined;
    this.owner.release(this.live, this);
  }

  /** Ends an idle stream (the connector ends its side when it reads the end). */
  close(): void {
    if (this.dead) return;
    this.dead = true;
    this.stream.end();
  }

  /** No ANSWER in `ms`: the flow fails and the stream goes (its connector is stuck). */
  unanswered(ms: number): void {
    this.#die(new OxyError('OXY_ERR_DIAL_FAILED', `The connector did not answer in ${ms / 1000} s`));
  }

  #die(err: Error): void {
    this.owner.answered(this);
    // A peer that answered with a stream header does not serve these streams: a stream per flow from now on.
    if (isOxyError(err, 'OXY_ERR_PROTOCOL_UNEXPECTED_MESSAGE')) this.live.tcpFlows = false;
    this.#stopAtAnswer();
    const socket = this.#socket;
    if (socket && !this.#answered) {
      if (!socket.destroyed) this.#owner?.failed(err, this.#ctx);
      if (socket instanceof AcceptedTcp) socket.onClose = undefined;
      socket.resetAndDestroy();
    }
    this.#link?.kill();
    this.#link = undefined;
    this.#socket = undefined;
    if (this.dead) return;
    this.dead = true;
    this.owner.forget(this.live.conn, this);
    this.stream.destroy();
  }
}

const ignore = (): void => undefined;
