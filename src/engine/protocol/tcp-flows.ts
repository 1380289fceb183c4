/**
 * `tcp-flows` streams (feature `tcp-flows/1`, WIRE.md §8): a tunnel stream the edge keeps open
 * and reuses for one private TCP flow after another, so a new flow costs two records on an open
 * stream instead of a transport stream's open, HEADERS and close on both ends. Both ways the
 * stream carries records `[u8 type][u32 length][payload]`; each flow's end is framed in band:
 * each direction ends with END (a half-close) or RESET (the flow aborted), and the stream is free
 * for the next OPEN once each side has sent and received one of them.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { OxyError } from '../../core/errors.js';
import { resetAfterFlush } from '../native/tcp-info.js';
import { ChunkQueue } from './chunks.js';
import { decodeWholeHeader, encodeResponseHeader, HEADER_MAGIC, ResponseStatus, type StreamRequestHeader, type StreamResponseHeader } from './stream-header.js';

/** Announced in the registration by connectors that serve `tcp-flows` streams. */
export const TCP_FLOWS_FEATURE = 'tcp-flows/1';

export const FlowRecord = {
  /** edge → connector: a flow's request header (the bytes of a `tcp` stream's, WIRE.md §1). */
  OPEN: 1,
  /** connector → edge: the flow's response header (status 0: dialled). */
  ANSWER: 2,
  DATA: 3,
  /** This direction of the flow ended (a FIN). */
  END: 4,
  /** The flow aborted; answered with a RESET unless the receiver already sent END or RESET. */
  RESET: 5,
} as const;

/** Largest OPEN or ANSWER payload (checked before it is awaited). */
export const MAX_FLOW_HEADER_RECORD = 64 * 1024;
/** The ANSWER of a flow the connector reached, as it writes it (the edge's addon knows it byte for byte: FdPumpEvents.atAnswer). */
export const FLOW_OK_ANSWER = encodeResponseHeader({ status: ResponseStatus.OK, message: '', metadata: [] });
/** Largest DATA payload (its bytes are passed on as they arrive, never gathered). */
export const MAX_FLOW_DATA_RECORD = 16 * 1024 * 1024;

const RECORD_HEAD = 5;

/** An OPEN's or ANSWER's payload: exactly one stream header of that type (WIRE.md §1). */
export function decodeFlowHeader(payload: Buffer, expect: 'request'): StreamRequestHeader;
export function decodeFlowHeader(payload: Buffer, expect: 'response'): StreamResponseHeader;
export function decodeFlowHeader(payload: Buffer, expect: 'request' | 'response'): StreamRequestHeader | StreamResponseHeader {
  const header = decodeWholeHeader(payload, expect, MAX_FLOW_HEADER_RECORD);
  if (!header) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `A tcp-flows record that is not one ${expect} header`);
  return header;
}

export function flowRecordHead(type: number, length: number): Buffer {
  const head = Buffer.allocUnsafe(RECORD_HEAD);
  head[0] = type;
  head.writeUInt32BE(length, 1);
  return head;
}

/** Below this a record goes as one copied buffer: a corked pair of writes costs more JS than the copy. */
const COPY_BELOW = 4096;

/** Writes one record (its head and payload) to `stream`. */
export function writeFlowRecord(stream: Duplex, type: number, payload: Buffer): void {
  const n = payload.length;
  if (n < COPY_BELOW) {
    const record = Buffer.allocUnsafe(RECORD_HEAD + n);
    record[0] = type;
    record.writeUInt32BE(n, 1);
    payload.copy(record, RECORD_HEAD);
    // A new flow's records mostly find nothing waiting: straight to the transport where it can.
    if (!(stream as { writeNow?(data: Buffer): boolean }).writeNow?.(record)) stream.write(record);
    return;
  }
  stream.cork();
  stream.write(flowRecordHead(type, n));
  stream.write(payload);
  stream.uncork();
}

const END_RECORD = flowRecordHead(FlowRecord.END, 0);
const RESET_RECORD = flowRecordHead(FlowRecord.RESET, 0);

export interface FlowRecordSink {
  /** OPEN or ANSWER, whole. */
  header(type: typeof FlowRecord.OPEN | typeof FlowRecord.ANSWER, payload: Buffer): void;
  /** DATA bytes as they arrive (a view of the received chunk). */
  data(bytes: Buffer): void;
  end(): void;
  reset(): void;
}

/**
 * Records off a stream, as a state machine over each chunk: DATA passes on as views of the
 * chunk, OPEN/ANSWER are gathered (at most MAX_FLOW_HEADER_RECORD). Throws OXY_ERR_PROTOCOL_*
 * on anything else; the parser is then failed.
 */
export class FlowRecordParser {
  readonly #head = Buffer.alloc(RECORD_HEAD);
  #headHave = 0;
  #dataLeft = 0;
  #bodyType = 0;
  #bodyLeft = 0;
  readonly #body = new ChunkQueue();
  #failed = false;

  constructor(
    private readonly sink: FlowRecordSink,
    /** The record type this side may receive as a header record. */
    private readonly headerType: typeof FlowRecord.OPEN | typeof FlowRecord.ANSWER,
  ) {}

  /** DATA bytes of the record being read still to come (0 between records); undefined mid-header or mid-OPEN/ANSWER. */
  get dataLeft(): number | undefined {
    return this.#headHave === 0 && this.#bodyLeft === 0 && !this.#failed ? this.#dataLeft : undefined;
  }

  /** Another reader (the transport's pump) takes the records from here: the rest of this DATA record is its. */
  handOver(): void {
    this.#dataLeft = 0;
  }

  push(chunk: Buffer): void {
    if (this.#failed) return;
    try {
      this.#step(chunk);
    } catch (err) {
      this.#failed = true;
      throw err;
    }
  }

  #step(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      if (this.#dataLeft > 0) {
        const n = Math.min(this.#dataLeft, len - off);
        this.#dataLeft -= n;
        this.sink.data(off === 0 && n === len ? chunk : chunk.subarray(off, off + n));
        off += n;
        continue;
      }
      if (this.#bodyLeft > 0) {
        const n = Math.min(this.#bodyLeft, len - off);
        this.#body.push(chunk.subarray(off, off + n));
        this.#bodyLeft -= n;
        off += n;
        if (this.#bodyLeft === 0) this.sink.header(this.#bodyType as 1 | 2, this.#body.consume(this.#body.length));
        continue;
      }
      const n = Math.min(RECORD_HEAD - this.#headHave, len - off);
      chunk.copy(this.#head, this.#headHave, off, off + n);
      this.#headHave += n;
      off += n;
      if (this.#headHave >= 2 && this.#head.readUInt16BE(0) === HEADER_MAGIC) {
        throw new OxyError(
          'OXY_ERR_PROTOCOL_UNEXPECTED_MESSAGE',
          'A stream header where a tcp-flows record was expected (the peer does not serve tcp-flows streams)',
        );
      }
      if (this.#headHave < RECORD_HEAD) continue;
      this.#headHave = 0;
      this.#record(this.#head[0]!, this.#head.readUInt32BE(1));
    }
  }

  #record(type: number, length: number): void {
    switch (type) {
      case FlowRecord.DATA:
        if (length > MAX_FLOW_DATA_RECORD) throw oversize('DATA', length, MAX_FLOW_DATA_RECORD);
        this.#dataLeft = length;
        return;
      case FlowRecord.END:
      case FlowRecord.RESET:
        if (length !== 0)
          throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `A tcp-flows ${type === FlowRecord.END ? 'END' : 'RESET'} record with ${length} payload bytes`);
        if (type === FlowRecord.END) this.sink.end();
        else this.sink.reset();
        return;
      case this.headerType:
        if (length > MAX_FLOW_HEADER_RECORD) throw oversize(type === FlowRecord.OPEN ? 'OPEN' : 'ANSWER', length, MAX_FLOW_HEADER_RECORD);
        if (length === 0) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'An empty tcp-flows header record');
        this.#bodyType = type;
        this.#bodyLeft = length;
        return;
      default:
        throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Unexpected tcp-flows record type 0x${type.toString(16)}`);
    }
  }
}

const oversize = (what: string, length: number, max: number): OxyError =>
  new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', `A tcp-flows ${what} record of ${length} bytes exceeds the limit of ${max}`);

/**
 * One flow's TCP socket joined to the records of its turn on a `tcp-flows` stream, the same on
 * both ends: the socket's bytes go as DATA, its FIN as END, its error or a close before its FIN
 * as RESET; DATA, END and RESET from the peer go to the socket (END: `end()`, RESET: `destroy()`).
 * `done` runs once both terminators have crossed: the stream is then the next flow's, and the
 * socket (still flushing, or lingering half-open) never touches it again.
 */
export class FlowLink {
  #socket: Socket | undefined;
  #sentTerm = false;
  #resetSent = false;
  #gotTerm = false;
  #released = false;
  /** Peer DATA before the socket is attached (the connector's dial), and its END. */
  #pending: Buffer[] | undefined = [];
  #pendingEnd = false;
  #corked = false;
  #streamPaused = false;
  #socketWaits = false;
  /** Unanswered (edge): after one chunk the socket waits for open(). */
  #gate: 'open' | 'one' | 'shut' = 'open';

  #unsent: number;
  #returnUnsent: number;

  /**
   * `unsent` (socket → stream) and `returnUnsent` (stream → socket): the source pauses while its
   * destination holds more than this, never less than the destination's high-water mark (below
   * it no 'drain' would come; 0 means pipe()'s mark).
   */
  constructor(
    private readonly stream: Duplex,
    unsent: number,
    returnUnsent: number,
    private readonly done: () => void,
  ) {
    this.#unsent = Math.max(unsent, stream.writableHighWaterMark);
    this.#returnUnsent = returnUnsent;
  }

  get released(): boolean {
    return this.#released;
  }

  /**
   * The flow's socket: from now on its bytes go out as DATA. `gate` (the edge before the answer):
   * `one` lets one chunk go, `shut` none, until open().
   */
  attach(socket: Socket, gate: 'open' | 'one' | 'shut' = 'open'): void {
    if (!this.#onSocketData) this.#makeListeners();
    this.#socket = socket;
    this.#gate = gate;
    this.#returnUnsent = Math.max(this.#returnUnsent, socket.writableHighWaterMark);
    socket.on('data', this.#onSocketData);
    socket.on('end', this.#onSocketEnd);
    socket.on('error', this.#onSocketGone);
    socket.on('close', this.#onSocketGone);
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending) for (const bytes of pending) socket.write(bytes);
    if (this.#pendingEnd) socket.end();
    // Gone already (its close was before these listeners): the flow aborts at once.
    if (socket.destroyed) this.abort();
    else if (gate !== 'shut') socket.resume();
  }

  /**
   * Before a socket is attached: the flow goes on without this link (the connector's socket pumped
   * by the transport), which takes the peer's DATA and END received so far. Undefined once released.
   */
  handOff(): { pending: Buffer[]; ended: boolean } | undefined {
    if (this.#released || this.#socket) return undefined;
    this.#released = true;
    const pending = this.#pending ?? [];
    this.#pending = undefined;
    return { pending, ended: this.#pendingEnd };
  }

  /**
   * The answer came (edge) and the socket goes on without this link (pumped by the transport):
   * paused, with what it read and did not hand over still in it. Undefined when the flow already
   * ended or aborted its way out, or the socket is gone (the link keeps it).
   */
  takeSocket(): Socket | undefined {
    const socket = this.#socket;
    if (!socket || this.#released || this.#sentTerm || socket.destroyed) return undefined;
    this.#released = true;
    this.#stopSocket();
    socket.off('end', this.#onSocketEnd);
    socket.off('error', this.#onSocketGone);
    socket.off('close', this.#onSocketGone);
    socket.pause();
    return socket;
  }

  /** The answer came: the socket's bytes flow freely. */
  open(): void {
    const was = this.#gate;
    this.#gate = 'open';
    if (was === 'shut' && !this.#socketWaits) this.#socket?.resume();
  }

  // ---------------------------------------------------------------- records from the peer

  data(bytes: Buffer): void {
    if (this.#gotTerm || this.#released) return;
    const socket = this.#socket;
    if (!socket) {
      this.#pending?.push(bytes);
      return;
    }
    if (socket.destroyed) return;
    // One writev per event-loop turn for the turn's records (a TLS read delivers several).
    if (!this.#corked) {
      this.#corked = true;
      socket.cork();
      setImmediate(this.#uncork);
    }
    socket.write(bytes);
    if (!this.#streamPaused && socket.writableLength > this.#returnUnsent) {
      this.#streamPaused = true;
      this.stream.pause();
      socket.once('drain', this.#onSocketDrain);
    }
  }

  end(): void {
    if (this.#gotTerm || this.#released) return;
    this.#gotTerm = true;
    const socket = this.#socket;
    if (!socket) this.#pendingEnd = true;
    else if (!socket.destroyed) socket.end();
    this.#maybeDone();
  }

  /**
   * Also after the peer's END: the flow aborted after a half-close. The socket is reset (RST), not
   * ended — once the peer's DATA before the RESET left it (resetAfterFlush, bounded: a host that
   * answers and resets at once; OXY_FLOW_RESET_FLUSH=0: at once, the bytes dropped).
   */
  reset(): void {
    if (this.#released) return;
    this.#gotTerm = true;
    this.#pending = undefined;
    const socket = this.#socket;
    if (socket && !socket.destroyed) {
      this.#corked = false;
      resetAfterFlush(socket);
    }
    this.abort();
  }

  // ---------------------------------------------------------------- local side

  /**
   * The flow aborts here (a failed dial, a refusal, the socket gone): RESET, also after this
   * side's END (a RESET that crosses the peer's last terminator is dropped there: a peer drops
   * records of a flow it has finished).
   */
  abort(): void {
    if (this.#released) return;
    if (!this.#resetSent) {
      this.#resetSent = true;
      this.#sentTerm = true;
      this.#stopSocket();
      this.stream.write(RESET_RECORD);
    }
    // The socket is gone: a stream paused for its backpressure reads on (the peer's last records
    // are dropped); paused, it would never read the peer's terminator, and would hold the
    // connection's window (iperf3 -R stalled every flow of its connection).
    this.#resumeStream();
    this.#maybeDone();
  }

  /**
   * The stream itself failed or ended: the flow dies with it, and nothing is written any more.
   * The socket is reset: a FIN would tell its peer the flow's data ended whole.
   */
  kill(): void {
    if (this.#released) return;
    this.#released = true;
    this.#stopSocket();
    const socket = this.#socket;
    if (socket && !socket.destroyed) socket.resetAndDestroy();
    this.#resumeStream();
  }

  // The socket's and the stream's listeners, made at the first attach(): a link whose flow a pump
  // carries (most flows on the vnet path: the edge's until its ANSWER, the connector's until its
  // connect) never has a socket, and six closures per flow were most of what the link allocated.
  #onSocketData!: (chunk: Buffer) => void;
  #onStreamDrain!: () => void;
  #onSocketEnd!: () => void;
  /** An error, or a close before the flow ended both ways: it aborts. */
  #onSocketGone!: () => void;
  #onSocketDrain!: () => void;
  #uncork!: () => void;

  #makeListeners(): void {
    this.#onSocketData = (chunk: Buffer): void => {
      if (this.#sentTerm || this.#released) return;
      const stream = this.stream;
      writeFlowRecord(stream, FlowRecord.DATA, chunk);
      if (this.#gate === 'one') {
        this.#gate = 'shut';
        this.#socket!.pause();
      }
      if (!this.#socketWaits && stream.writableLength > this.#unsent) {
        this.#socketWaits = true;
        this.#socket!.pause();
        stream.once('drain', this.#onStreamDrain);
      }
    };
    this.#onStreamDrain = (): void => {
      this.#socketWaits = false;
      if (this.#gate !== 'shut' && !this.#sentTerm && !this.#released) this.#socket?.resume();
    };
    this.#onSocketEnd = (): void => {
      if (this.#sentTerm || this.#released) return;
      this.#sentTerm = true;
      this.stream.write(END_RECORD);
      this.#maybeDone();
    };
    this.#onSocketGone = (): void => this.abort();
    this.#onSocketDrain = (): void => {
      this.#resumeStream();
    };
    this.#uncork = (): void => {
      this.#corked = false;
      this.#socket?.uncork();
    };
  }

  #resumeStream(): void {
    if (!this.#streamPaused) return;
    this.#streamPaused = false;
    this.#socket?.off('drain', this.#onSocketDrain);
    this.stream.resume();
  }

  #stopSocket(): void {
    const socket = this.#socket;
    if (!socket) return;
    socket.off('data', this.#onSocketData);
    this.stream.off('drain', this.#onStreamDrain);
  }

  #maybeDone(): void {
    if (this.#released || !this.#sentTerm || !this.#gotTerm) return;
    this.#released = true;
    this.#stopSocket();
    this.#resumeStream();
    const socket = this.#socket;
    if (socket) {
      socket.off('end', this.#onSocketEnd);
      socket.off('error', this.#onSocketGone);
      socket.off('close', this.#onSocketGone);
      socket.on('error', ignore);
    }
    this.done();
  }
}

const ignore = (): void => undefined;
