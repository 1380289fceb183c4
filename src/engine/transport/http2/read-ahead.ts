/**
 * A Duplex over a socket that never stops reading it — what the connector's HTTP/2 session
 * runs on, to break a deadlock in Node's http2 with large flow-control windows.
 *
 * Node's Http2Session stops reading its socket while one of its writes is in progress (a
 * bound on buffering, see nodejs/node's node_http2.cc `MaybeStopReading`). When both peers
 * send bulk data at once and each peer's in-flight bytes exceed what the kernel buffers
 * between them hold, both writes stall, so neither reads, so neither write completes:
 * measured here with 8 MiB stream / 32 MiB connection windows, a 50 MB transfer each way
 * on one stream stopped for good after ~2 MB. With Node's 64 KiB default windows in-flight
 * data fits the kernel buffers, at 0.6-0.7x of plain TLS on one stream.
 *
 * One side that always drains its socket is enough to guarantee progress: the edge's writes
 * then always complete, so the edge always resumes reading. Memory stays bounded: the peer
 * cannot send more than the HTTP/2 connection window our session advertised, and the
 * session only grows that window as it processes what it read.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

export class ReadAheadDuplex extends Duplex {
  private readonly socket: Socket;

  constructor(socket: Socket) {
    // The readable side buffers without limit by design (bounded by HTTP/2 flow control);
    // the writable side passes straight through to the socket's own buffering.
    super({ readableHighWaterMark: 1024 * 1024, writableHighWaterMark: 64 * 1024, allowHalfOpen: true });
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.push(chunk);
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => {
      if (!this.destroyed) this.destroy();
    });
  }

  override _read(): void {
    // Reading is never paused: see the file comment.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.socket.write(chunk)) callback();
    else this.socket.once('drain', () => callback());
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    let ok = true;
    this.socket.cork();
    for (const { chunk } of chunks) ok = this.socket.write(chunk);
    this.socket.uncork();
    if (ok) callback();
    else this.socket.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(() => callback());
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy(err ?? undefined);
    callback(err);
  }
}
