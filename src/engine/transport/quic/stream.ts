/**
 * A QUIC tunnel stream as a Node Duplex. The Duplex is thin: bytes go to and come from the
 * owning QuicTunnelConnection, which talks to quiche. Per stream it keeps
 *
 *  - `pending`: frames quiche had no room for (flow control), sent in order when the
 *    stream is writable again; the write callback waits for them, so `write()` returns
 *    false once writableHighWaterMark is queued above what quiche holds;
 *  - the frame parser of the receive side; reading pauses (quiche keeps the bytes, so the
 *    peer's flow-control window closes) while push() reports a full readable buffer.
 */
import { Duplex } from 'node:stream';
import { OxyError } from '../../../core/errors.js';
import { ANSWER_FLAG, ANSWER_STATE } from '../../native/index.js';
import type { AnswerPump, AnswerPumpOptions, FdPump, FdPumpEvents, NativeDialer, TunnelStream } from '../types.js';
import { encodeData, endFrame, preamble, StreamFrameParser } from './framing.js';

/** What the stream needs from its connection. */
export interface QuicStreamOwner {
  /** Try to hand `stream.pending` to quiche; true when all of it went. */
  flushStream(stream: QuicStream): boolean;
  /** The application wants more bytes: read this stream on the next service. */
  resumeRead(stream: QuicStream): void;
  /** The stream is done (cleanly or not); `reset` asks for RESET_STREAM + STOP_SENDING. */
  streamDestroyed(stream: QuicStream, reset: boolean): void;
  /** The addon's ngtcp2 only: the stream's bytes pumped to and from a TCP socket (TunnelStream.pumpTo). */
  attachPump?(stream: QuicStream, fd: number, events: FdPumpEvents): FdPump | undefined;
  /** The addon's ngtcp2 server only: the stream's answers written to a client socket (TunnelStream.answerTo). */
  attachAnswers?(stream: QuicStream, fd: number, options: AnswerPumpOptions): NativeAnswers | undefined;
  /** The addon's ngtcp2 client only: TCP connects whose sockets its pumps take (TunnelStream.dialer). */
  readonly dialer?: NativeDialer;
  /** Why the connection closed, when it did: streams it cuts fail with this. */
  closedError(): OxyError | undefined;
}

/** What the connection gives a stream's answer pump: the addon's calls for it. */
export interface NativeAnswers {
  state: Float64Array;
  arm(flags: number): boolean;
  /** The addon reads the client socket (AnswerPump.read); undefined where it cannot. */
  read?: (host: string, client: string) => boolean;
  readStop(): Buffer;
  /** The addon reads a request body from the client socket (AnswerPump.readBody); undefined where it cannot. */
  readBody?: (left: number, chunkState?: number[]) => boolean;
  close(): void;
}

export interface PendingWrite {
  buf: Buffer;
  fin: boolean;
}

/** Readable/writable buffer sizes of the Duplex, above what quiche holds. */
const HIGH_WATER_MARK = 256 * 1024;
/** Corked writes up to this many bytes in all become one buffer (one binding call). */
const WRITEV_CONCAT_BELOW = 16 * 1024;
/** writeNow() takes at most this many bytes (one frame, one copy). */
const WRITE_NOW_BELOW = 16 * 1024;

export class QuicStream extends Duplex implements TunnelStream {
  readonly id: number;
  /** Frames waiting for flow-control credit, oldest first. */
  pending: PendingWrite[] = [];
  /** Callback of the write (or final) whose frames are in `pending`. */
  private writeCallback: ((err?: Error | null) => void) | undefined;
  private preambleQueued: boolean;
  private readonly parser = new StreamFrameParser();
  /** push() said the readable buffer is full: stop taking bytes from quiche. */
  readPaused = false;
  /** END went to quiche with the FIN. */
  localEnded = false;
  /** The peer reset the stream or stopped our sending: no RESET back needed, no more sends. */
  peerAborted = false;
  onFlowOpen: ((payload: Buffer, token?: number) => boolean) | undefined = undefined;

  constructor(
    private readonly owner: QuicStreamOwner,
    id: number,
    local: boolean,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: HIGH_WATER_MARK, writableHighWaterMark: HIGH_WATER_MARK });
    this.id = id;
    // A stream we open announces itself at once with the preamble; one the peer opened
    // gets ours with the first bytes we send.
    this.preambleQueued = local;
    if (local) this.pending.push({ buf: preamble(), fin: false });
  }

  /** True once the peer's END was read. */
  get remoteEnded(): boolean {
    return this.parser.ended;
  }

  /**
   * Bytes of this stream from quiche (a copy we own). Sets readPaused when the readable
   * buffer is full. Throws an OxyError when the bytes break the framing.
   */
  receive(data: Buffer): void {
    this.parser.push(data, (payload) => {
      if (!this.push(payload)) this.readPaused = true;
    });
    if (this.parser.ended) this.push(null);
  }

  /** quiche reported the FIN. Without END before it, the stream was cut: an error, never 'end'. */
  receiveFin(): void {
    if (!this.parser.ended) {
      this.destroy(new OxyError('OXY_ERR_STREAM_RESET', `QUIC stream ${this.id} ended without its END frame`));
    }
  }

  /** The peer reset its sending side (RESET_STREAM) or stopped ours (STOP_SENDING). */
  abortedByPeer(kind: 'reset' | 'stopped', code: number): void {
    this.peerAborted = true;
    this.destroy(new OxyError('OXY_ERR_STREAM_RESET', `QUIC stream ${this.id} ${kind === 'reset' ? 'reset' : 'stopped'} by peer (code ${code})`));
  }

  get dialer(): NativeDialer | undefined {
    return this.owner.dialer;
  }

  pumpTo(fd: number, events: FdPumpEvents): FdPump | undefined {
    // Only with nothing of ours waiting: the pump's bytes must follow everything written before.
    if (!this.owner.attachPump || this.destroyed || this.writableEnded || this.writableLength > 0 || this.pending.length > 0) return undefined;
    if (!this.preambleQueued) {
      this.preambleQueued = true;
      this.pending.push({ buf: preamble(), fin: false });
      this.owner.flushStream(this);
      if (this.destroyed) return undefined;
    }
    return this.owner.attachPump(this, fd, events);
  }

  answerTo(fd: number, options: AnswerPumpOptions): AnswerPump | undefined {
    const native = this.owner.attachAnswers?.(this, fd, options);
    if (!native) return undefined;
    return {
      state: native.state,
      close: native.close,
      readStop: native.readStop,
      read: native.read
        ? (host, client) => {
            // As arm: the Duplex read every byte the pump left it, stands between frames past the
            // preamble, and has nothing of its own to write (the addon's HEADs go straight to the stream).
            if (this.destroyed || this.readableLength > 0 || this.readPaused || this.readableFlowing !== true || native.state[ANSWER_STATE.HELD] !== 0)
              return false;
            if (this.parser.atStart || !this.parser.atBoundary || this.writableLength > 0 || this.pending.length > 0 || this.writableEnded) return false;
            return native.read!(host, client);
          }
        : undefined,
      readBody: native.readBody
        ? (left, chunkState) => {
            // The addon's BODY records must follow every byte written before: nothing of ours waits.
            if (this.destroyed || this.writableEnded || !this.preambleQueued || this.writableLength > 0 || this.pending.length > 0) return false;
            return native.readBody!(left, chunkState);
          }
        : undefined,
      arm: (headRequest, close) => {
        // The Duplex must have read every byte before the pump takes the next: none buffered or on their way.
        const start = this.parser.atStart;
        if (this.destroyed || this.readableLength > 0 || this.readPaused || this.readableFlowing !== true || native.state[ANSWER_STATE.HELD] !== 0)
          return false;
        if (!start && !this.parser.atBoundary) return false;
        const flags = (headRequest ? ANSWER_FLAG.HEAD_REQUEST : 0) | (close ? ANSWER_FLAG.CLOSE : 0) | (start ? ANSWER_FLAG.PREAMBLE : 0);
        if (!native.arm(flags)) return false;
        if (start) this.parser.skipPreamble();
        return true;
      },
    };
  }

  /** Nothing half-read: between frames, nothing buffered, reading (a pump may take whole records). */
  atFrameBoundary(): boolean {
    return this.frameLeft() === 0;
  }

  /**
   * With nothing buffered and reading: the payload bytes of the frame being read still to come (0
   * between frames), which a pump may take over from here. Undefined mid-header or when not reading.
   */
  frameLeft(): number | undefined {
    if (this.readableLength !== 0 || this.readPaused || this.destroyed || this.readableFlowing !== true) return undefined;
    return this.parser.payloadLeft;
  }

  /** The transport reads this stream's frames from here on and hands this Duplex whole frames. */
  handOver(): void {
    this.parser.handOver();
  }

  /** The connection flushed `pending` to quiche: release the waiting write. */
  drained(): void {
    const callback = this.writeCallback;
    this.writeCallback = undefined;
    callback?.();
  }

  writeNow(data: Buffer): boolean {
    if (data.length > WRITE_NOW_BELOW || !this.preambleQueued || this.writeCallback || this.pending.length !== 0) return false;
    if (this.writableLength !== 0 || this.writableCorked !== 0 || this.writableEnded || this.destroyed) return false;
    const frames = encodeData(data);
    for (const buf of frames) this.pending.push({ buf, fin: false });
    // Above the connection's high-water mark the next write() waits (its flushStream says so again).
    this.owner.flushStream(this);
    return true;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.queueFrames(encodeData(chunk), false, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    const frames: Buffer[] = [];
    let bytes = 0;
    for (const { chunk } of chunks) {
      for (const part of encodeData(chunk)) frames.push(part);
      bytes += chunk.length;
    }
    // Small writes corked together go to quiche in one call.
    this.queueFrames(frames.length > 1 && bytes <= WRITEV_CONCAT_BELOW ? [Buffer.concat(frames)] : frames, false, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.queueFrames([endFrame()], true, callback);
  }

  override _read(): void {
    if (!this.readPaused) return;
    this.readPaused = false;
    // After END every byte is out of quiche (END travels with the FIN), which may have freed
    // the stream already: asking it again would fail with InvalidStreamState and cut the tail
    // still in our buffer.
    if (!this.parser.ended) this.owner.resumeRead(this);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const clean = this.localEnded && this.parser.ended;
    this.writeCallback = undefined;
    this.pending = [];
    this.owner.streamDestroyed(this, !clean && !this.peerAborted);
    callback(err);
  }

  private queueFrames(frames: Buffer[], fin: boolean, callback: (err?: Error | null) => void): void {
    if (!this.preambleQueued) {
      this.preambleQueued = true;
      this.pending.push({ buf: preamble(), fin: false });
    }
    for (let i = 0; i < frames.length; i++) this.pending.push({ buf: frames[i]!, fin: fin && i === frames.length - 1 });
    if (this.owner.flushStream(this)) {
      callback();
    } else if (this.destroyed) {
      callback(this.owner.closedError() ?? new OxyError('OXY_ERR_STREAM_RESET', `QUIC stream ${this.id} was reset`));
    } else {
      this.writeCallback = callback;
    }
  }
}
