/**
 * A private TCP flow's socket pumped by the transport (TunnelStream.pumpTo, plain): the bytes go
 * both ways without JS and each direction half-closes on its own, as a JS relay does. Both ends
 * use it over QUIC on ngtcp2: the connector for its dialled socket, the edge for the upgraded one.
 */
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import { socketFd } from '../native/index.js';
import type { TunnelStream } from './types.js';

const debug = debuglog('oxy:transport:flow-pump');

export interface PumpedFlow {
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
export function pumpFlow(stream: TunnelStream, socket: Socket): PumpedFlow | undefined {
  const fd = socketFd(socket);
  if (fd === undefined || !stream.pumpTo || stream.readableEnded || stream.destroyed || socket.destroyed) return undefined;
  // What the socket read while paused is the stream's before the pump's bytes.
  for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) stream.write(chunk);
  let inDone = false;
  let outDone = false;
  let over = false;
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  const finish = (failed: boolean): void => {
    if (over || (!failed && !(inDone && outDone))) return;
    over = true;
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
  if (!pump) return undefined;
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
