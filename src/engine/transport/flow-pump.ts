/**
 * A private TCP flow's socket pumped by the transport (TunnelStream.pumpTo): the bytes go both ways
 * without JS. Both ends use it over QUIC on ngtcp2 (the connector for its dialled socket, the edge
 * for the upgraded one): plainly on a stream per flow (each direction half-closes on its own, as a
 * JS relay does), or as one flow of a reused `tcp-flows` stream (its records read and written by
 * the addon).
 */
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import { AcceptedTcp, closeFd, dupFd, resetOnClose, socketFd } from '../native/index.js';
import { FLOW_OK_ANSWER, FlowRecord, writeFlowRecord } from '../protocol/tcp-flows.js';
import type { FdPump, FdPumpEvents, TunnelStream } from './types.js';

const debug = debuglog('oxy:transport:flow-pump');

export interface PlainPump {
  /** Settles once both directions ended (or either failed: the stream is reset then). */
  readonly done: Promise<void>;
  /** Ends the flow now: the pump's descriptor closes (the kernel ends the connection) and the stream is reset. */
  abort(): void;
}

/**
 * Hands `socket` to the addon with `stream`. Bytes the socket already read (and did not hand on)
 * go to the stream first; the JS socket is destroyed (the addon keeps a duplicate of its fd, so
 * nothing reaches the peer). Undefined when the stream cannot pump now: the socket stays the
 * caller's, untouched except for those bytes, which the stream has.
 */
export function pumpFlow(stream: TunnelStream, socket: Socket): PlainPump | undefined {
  const fd = socketFd(socket);
  if (fd === undefined || !stream.pumpTo || stream.readableEnded || stream.destroyed || socket.destroyed) return undefined;
  // What the socket read while paused is the stream's before the pump's bytes.
  for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) stream.write(chunk);
  let inDone = false;
  let outDone = false;
  let over = false;
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  // A descriptor of ours on the socket: a failed flow sets SO_LINGER 0 through it, so that the
  // addon's close resets the socket's peer (the stream's reset is the socket's), not a FIN.
  const kept = dupFd(fd);
  const finish = (failed: boolean): void => {
    if (over || (!failed && !(inDone && outDone))) return;
    over = true;
    if (failed) resetOnClose(kept);
    closeFd(kept);
    pump?.close();
    if (failed) stream.destroy();
    resolve();
  };
  const pump = stream.pumpTo(fd, {
    plain: true,
    answer: () => undefined,
    end: (errno) => {
      if (errno) return finish(true);
      // The socket's FIN: the stream's END follows every byte it sent.
      stream.end();
      outDone = true;
      finish(false);
    },
    drain: () => stream.resume(),
    shut: () => {
      inDone = true;
      finish(false);
    },
  });
  if (!pump) {
    if (!over) closeFd(kept);
    over = true;
    return undefined;
  }
  debug('stream %d: flow socket pumped by the addon', stream.id);
  // The addon holds a duplicate: closing ours sends nothing to the peer.
  socket.destroy();
  // Bytes that came before the addon took the stream's receive side over are written here.
  const write = (chunk: Buffer): void => {
    if (!pump.write(chunk, false)) stream.pause();
  };
  for (let chunk = stream.read() as Buffer | null; chunk !== null; chunk = stream.read() as Buffer | null) write(chunk);
  stream.on('data', write);
  stream.once('end', () => pump.end?.());
  stream.once('error', () => finish(true));
  // A clean close (both ends seen) may come before the last bytes reached the socket: `shut` says when.
  stream.once('close', () => finish(!(stream.readableEnded && stream.writableFinished)));
  stream.resume();
  return { done, abort: () => finish(true) };
}

/** What a flows pump needs of the stream's tcp-flows reader (protocol/tcp-flows.ts FlowRecordParser). */
export interface FlowRecordReader {
  /** The DATA record's bytes still to come; undefined when a record header is half-read. */
  readonly dataLeft: number | undefined;
  /** The transport reads the records from here on: the reader forgets the DATA record it was in. */
  handOver(): void;
}

/**
 * One flow of a `tcp-flows` stream whose socket the transport pumps (FdPumpEvents.flows), on
 * either end: from the hand-over on, the addon reads the flow's records and writes the socket's;
 * until then what the stream's reader gets of the flow is passed to the pump here. Ends when the
 * addon says both terminators crossed (`flowDone`), or with the stream (`kill`).
 */
export class PumpedFlow {
  #released = false;
  #gotTerm = false;
  #paused = false;
  /** atAnswer(): the transport has not said yet that it started the pump. */
  #waiting = false;
  /** atAnswer() with `earlyError`: the transport reads the connection's first chunk. */
  readsEarly = false;
  #pump!: FdPump;

  private constructor(
    private readonly stream: TunnelStream,
    private readonly done: () => void,
  ) {}

  /**
   * Pumps `socket` (paused, or just dialled) as the stream's current flow. What the socket read
   * and still holds goes first as DATA records; `early` (called once the pump is there) gives the
   * peer's DATA and END the flow got before. Undefined when the stream cannot pump it: the socket
   * is the caller's, its held bytes written. `connecting` (a dial's token, at the flow's OPEN): the
   * dial is still connecting, and the transport writes the OK ANSWER once it connected
   * (FdPumpEvents.atConnect); the dial's `done` still hears the connect.
   */
  static start(
    stream: TunnelStream,
    socket: Socket | number | AcceptedTcp,
    reader: FlowRecordReader,
    early: () => { pending: Buffer[]; ended: boolean },
    done: () => void,
    connecting = false,
  ): PumpedFlow | undefined {
    // A number: a NativeDialer token (the connector's dial made by the addon: no Node socket);
    // an AcceptedTcp: the edge's upgraded connection, still the addon's (its token).
    const dial = typeof socket === 'number';
    const accepted = socket instanceof AcceptedTcp;
    const fd = dial ? socket : accepted ? socket.token : socketFd(socket);
    if (fd === undefined || !stream.pumpTo) return undefined;
    if (!dial && !accepted)
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) writeFlowRecord(stream, FlowRecord.DATA, chunk);
    const flow = new PumpedFlow(stream, done);
    const events = new FlowPumpEvents(flow, reader);
    events.dial = dial;
    events.accepted = accepted;
    if (connecting) events.atConnect = FLOW_OK_ANSWER;
    const pump = stream.pumpTo(fd, events);
    if (!pump) return undefined;
    flow.#pump = pump;
    if (debug.enabled)
      debug(
        'stream %d: tcp-flows flow pumped by the addon%s',
        stream.id,
        connecting ? ', dialled there, from its connect' : dial ? ', dialled there' : accepted ? ', accepted there' : '',
      );
    if (accepted) socket.taken();
    // The addon holds a duplicate: closing ours sends nothing to the peer.
    else if (!dial) socket.destroy();
    const before = early();
    for (const bytes of before.pending) flow.data(bytes);
    if (before.ended) flow.end();
    return flow;
  }

  /**
   * The edge's accepted connection `conn` (the flow's OPEN written, its ANSWER awaited, the reader
   * between records), pumped from the ANSWER on if it is the OK one: the transport reads the
   * stream's records from here, starts the pump itself at that ANSWER (no JS turn for it) and says
   * so late (`answered`: the flow is this PumpedFlow's from then). Anything else (another answer, a
   * record before it) comes to the reader as without this: `cancel()` then, and whenever the flow
   * ends or changes hands before `answered`. Undefined where the stream cannot. With `earlyError`
   * the transport also reads the connection's first chunk and writes it as the flow's DATA
   * (`readsEarly`); its end waits for the pump, its error comes there. With `open` the transport
   * writes the flow's OPEN record first (FdPumpEvents.open): undefined wrote nothing.
   */
  static atAnswer(
    stream: TunnelStream,
    conn: AcceptedTcp,
    reader: FlowRecordReader,
    answered: (flow: PumpedFlow) => void,
    done: () => void,
    earlyError?: (errno: number) => void,
    open?: Buffer,
  ): PumpedFlow | undefined {
    if (!stream.pumpTo) return undefined;
    const flow = new PumpedFlow(stream, done);
    const events = new FlowPumpEvents(flow, reader);
    events.accepted = true;
    events.atAnswer = FLOW_OK_ANSWER;
    events.conn = conn;
    events.onAnswered = answered;
    events.earlyRead = earlyError !== undefined;
    events.onEarlyError = earlyError;
    events.open = open;
    const pump = stream.pumpTo(conn.token, events);
    if (!pump) return undefined;
    flow.#pump = pump;
    flow.#waiting = true;
    flow.readsEarly = earlyError !== undefined;
    return flow;
  }

  /**
   * Before `answered`: the pump is not to start. True when it had started already (the transport
   * read the OK ANSWER; JS had not heard yet): it is closed now and its socket reset, the flow cut.
   */
  cancel(): boolean {
    if (!this.#waiting) return false;
    this.#waiting = false;
    this.#released = true;
    return this.#pump.close(true) !== -2;
  }

  get released(): boolean {
    return this.#released;
  }

  data(bytes: Buffer): void {
    if (this.#gotTerm || this.#released) return;
    if (!this.#pump.write(bytes, false) && !this.#paused) {
      this.#paused = true;
      this.stream.pause();
    }
  }

  end(): void {
    if (this.#gotTerm || this.#released) return;
    this.#gotTerm = true;
    this.#pump.end?.();
  }

  reset(): void {
    if (this.#released) return;
    this.#gotTerm = true;
    this.#pump.reset?.();
  }

  /** The stream failed or ended under the flow: the socket is reset (a FIN would say its data ended). */
  kill(): void {
    if (this.#released) return;
    this.#released = true;
    this.#pump.close(true);
    this.#resume();
  }

  /** @internal FlowPumpEvents: the transport started the pump at the OK ANSWER. */
  answeredThere(conn: AcceptedTcp, answered: (flow: PumpedFlow) => void, openThere: boolean): void {
    if (!this.#waiting) return;
    this.#waiting = false;
    conn.taken();
    if (debug.enabled)
      debug('stream %d: tcp-flows flow pumped by the addon, accepted there, from its answer%s', this.stream.id, openThere ? ', its OPEN written there' : '');
    answered(this);
  }

  /** @internal FlowPumpEvents: the socket's bytes went below the high-water mark. */
  drained(): void {
    this.#resume();
  }

  /** @internal FlowPumpEvents: a terminator went each way. */
  finish(): void {
    if (this.#released) return;
    this.#released = true;
    this.#resume();
    this.done();
  }

  #resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.stream.resume();
  }
}

/**
 * The pump's events of one tcp-flows flow (FdPumpEvents with `flows`): one object of one shape per
 * flow, its methods on the prototype (an object literal of closures spread into another cost ~4 %
 * of the connector's main thread per new connection in V8's slow property definitions, and its
 * shapes made attachPump's reads megamorphic).
 */
class FlowPumpEvents implements FdPumpEvents {
  readonly flows = true;
  dial = false;
  accepted = false;
  atConnect: Buffer | undefined = undefined;
  atAnswer: Buffer | undefined = undefined;
  earlyRead = false;
  open: Buffer | undefined = undefined;
  readonly plain = false;
  readonly head = undefined;
  /** atAnswer: the accepted connection, and who hears that the pump started. */
  conn: AcceptedTcp | undefined = undefined;
  onAnswered: ((flow: PumpedFlow) => void) | undefined = undefined;
  onEarlyError: ((errno: number) => void) | undefined = undefined;

  constructor(
    private readonly flow: PumpedFlow,
    private readonly reader: FlowRecordReader,
  ) {}

  answer(): void {}

  end(): void {}

  drain(): void {
    this.flow.drained();
  }

  bodyLeft(): number | undefined {
    return this.reader.dataLeft;
  }

  handOver(): void {
    this.reader.handOver();
  }

  flowDone(): void {
    this.flow.finish();
  }

  answered(): void {
    if (this.conn && this.onAnswered) this.flow.answeredThere(this.conn, this.onAnswered, this.open !== undefined);
  }

  earlyError(errno: number): void {
    this.onEarlyError?.(errno);
  }
}
