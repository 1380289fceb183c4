/**
 * The byte framing of a QUIC tunnel stream. A QUIC stream's end is normally its FIN, but
 * then whether a stream ends depends on one flag in one packet (a stack that mishandles a
 * lost FIN-only packet hangs the stream forever). Here the end is in the bytes:
 *
 *   stream  = PREAMBLE frame* END
 *   PREAMBLE = u8 0x01              framing version; sent at open so the peer sees the
 *                                    stream at once, before the application writes
 *   frame   = [u8 type][u32 BE length][payload]
 *   DATA    type 0x00, length 1..MAX_FRAME_PAYLOAD: stream bytes
 *   END     type 0x01, length 0: clean end of this direction
 *
 * The sender writes END and the FIN in one `streamSend(…, fin = true)`, so the FIN always
 * travels with the END bytes and never alone. The receiver ends the readable side on END,
 * whether or not the FIN has arrived. A stream that stops without END (reset, connection
 * lost) never looks complete. Resets are QUIC RESET_STREAM / STOP_SENDING, not frames.
 */
import { OxyError } from '../../../core/errors.js';

export const FRAMING_VERSION = 0x01;
export const FRAME_DATA = 0x00;
export const FRAME_END = 0x01;
export const FRAME_HEADER_SIZE = 5;
/** Largest DATA payload; longer writes are split. Checked before a payload is read. */
export const MAX_FRAME_PAYLOAD = 1024 * 1024;

const PREAMBLE = Buffer.from([FRAMING_VERSION]);
const END_FRAME = Buffer.from([FRAME_END, 0, 0, 0, 0]);

export function preamble(): Buffer {
  return PREAMBLE;
}

export function endFrame(): Buffer {
  return END_FRAME;
}

/**
 * Up to this many payload bytes, a DATA frame is one buffer (header and a copy of the
 * payload): one streamSend() call into the binding instead of two, which costs more than the
 * copy (~0.5 µs a call). Small enough for the frame to come from Buffer's pool (< 4 KiB).
 */
const COPY_BELOW = 4000;

/** DATA frame headers + payload views for `data` (no copy of the payload unless it is small). */
export function encodeData(data: Buffer): Buffer[] {
  if (data.length <= COPY_BELOW) {
    const frame = Buffer.allocUnsafe(FRAME_HEADER_SIZE + data.length);
    frame[0] = FRAME_DATA;
    frame.writeUInt32BE(data.length, 1);
    data.copy(frame, FRAME_HEADER_SIZE);
    return [frame];
  }
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += MAX_FRAME_PAYLOAD) {
    const part = data.subarray(off, Math.min(data.length, off + MAX_FRAME_PAYLOAD));
    const header = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
    header[0] = FRAME_DATA;
    header.writeUInt32BE(part.length, 1);
    out.push(header, part);
  }
  return out;
}

export type FrameEvent = { type: 'data'; data: Buffer } | { type: 'end' };

/**
 * Incremental parser of one stream direction: push received bytes, get payload views and
 * the END. A state machine over the incoming chunk (only a frame header split across
 * chunks is copied, into a 5-byte scratch); payloads are delivered as they arrive, as
 * views of the received chunk, so a 1 MiB frame does not wait to be whole.
 */
export class StreamFrameParser {
  private state: 'preamble' | 'header' | 'payload' | 'ended' = 'preamble';
  private readonly header = Buffer.alloc(FRAME_HEADER_SIZE);
  private headerFill = 0;
  private remaining = 0;

  get ended(): boolean {
    return this.state === 'ended';
  }

  /** Between frames: nothing of a frame read yet. */
  get atBoundary(): boolean {
    return this.state === 'header' && this.headerFill === 0;
  }

  /** Payload bytes of the DATA frame being read still to come (0 between frames); undefined mid-header or before the preamble. */
  get payloadLeft(): number | undefined {
    if (this.state === 'payload') return this.remaining;
    return this.atBoundary ? 0 : undefined;
  }

  /** Another reader took the rest of the stream's frames (the addon's pump): this one stands between frames. */
  handOver(): void {
    if (this.state === 'payload') this.state = 'header';
    this.remaining = 0;
  }

  /** Nothing read yet, not even the preamble. */
  get atStart(): boolean {
    return this.state === 'preamble';
  }

  /** Someone else read the preamble (the edge's answer pump): go on with frames. */
  skipPreamble(): void {
    if (this.state === 'preamble') this.state = 'header';
  }

  /** Feeds bytes; calls `onData` with views and returns true once END was read. */
  push(chunk: Buffer, onData: (data: Buffer) => void): boolean {
    let off = 0;
    while (off < chunk.length) {
      switch (this.state) {
        case 'preamble': {
          const version = chunk[off++]!;
          if (version !== FRAMING_VERSION) {
            throw new OxyError('OXY_ERR_PROTOCOL_UNSUPPORTED_VERSION', `QUIC stream framing version ${version} is not supported`);
          }
          this.state = 'header';
          break;
        }
        case 'header': {
          const take = Math.min(FRAME_HEADER_SIZE - this.headerFill, chunk.length - off);
          chunk.copy(this.header, this.headerFill, off, off + take);
          this.headerFill += take;
          off += take;
          if (this.headerFill < FRAME_HEADER_SIZE) break;
          this.headerFill = 0;
          const type = this.header[0]!;
          const length = this.header.readUInt32BE(1);
          if (type === FRAME_END) {
            if (length !== 0) throw malformed(`END frame with length ${length}`);
            this.state = 'ended';
            break;
          }
          if (type !== FRAME_DATA) throw malformed(`unknown frame type 0x${type.toString(16)}`);
          if (length === 0) throw malformed('empty DATA frame');
          if (length > MAX_FRAME_PAYLOAD) {
            throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', `DATA frame of ${length} bytes exceeds ${MAX_FRAME_PAYLOAD}`);
          }
          this.remaining = length;
          this.state = 'payload';
          break;
        }
        case 'payload': {
          const take = Math.min(this.remaining, chunk.length - off);
          onData(chunk.subarray(off, off + take));
          off += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = 'header';
          break;
        }
        case 'ended':
          throw malformed('bytes after the END frame');
      }
    }
    return this.state === 'ended';
  }
}

function malformed(what: string): OxyError {
  return new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `QUIC stream framing: ${what}`);
}
