/**
 * How a public listener closes a connection after its answer while the client may still send
 * (the rest of a body the answer came before, a head too large, requests after a close): the
 * socket half-closes (the FIN follows the answer), and what the client sends after is read and
 * dropped — never parsed — until its FIN, at most LINGER_MS and LINGER_BYTES, then the socket
 * goes. Closed at once, the unread bytes reset the connection, and a client that writes before it
 * reads (an upload on a loaded host) loses the answer to that reset (RFC 9112 §9.6).
 * `OXY_EDGE_LINGER=0` closes once the answer is flushed (A/B).
 */
import type { Socket } from 'node:net';

export const LINGER_MS = process.env.OXY_EDGE_LINGER === '0' ? 0 : 5_000;
export const LINGER_BYTES = 64 * 1024 * 1024;

/** Sockets closing after their answer (a second close is a no-op). */
const closing = new WeakSet<Socket>();

/**
 * Ends `socket` after what was written to it, dropping what its client still sends (bounded).
 * The caller's own readers must not read it any more; a socket whose client ended already goes
 * once the answer is out (as Node closes a socket whose both sides ended). `lingerMs` 0: the socket
 * goes once the answer is flushed, nothing read (a caller that cannot stop its own reader).
 */
export function closeAfterAnswer(socket: Socket, lingerMs = LINGER_MS): void {
  if (closing.has(socket) || socket.destroyed) return;
  closing.add(socket);
  socket.end();
  if (socket.readableEnded) return;
  if (lingerMs === 0) return destroyOnceFlushed(socket);
  const mark = socket.bytesRead;
  const timer = setTimeout(() => socket.destroy(), lingerMs);
  socket.on('data', () => {
    if (socket.bytesRead - mark > LINGER_BYTES) socket.destroy();
  });
  socket.once('close', () => clearTimeout(timer));
  // The client's FIN: the socket goes once the answer is out (a half-open capable socket does not end its side by itself).
  socket.once('end', () => destroyOnceFlushed(socket));
  // Paused for a tunnel that no longer drains, or for read-ahead: the bytes are read to be dropped.
  if (socket.isPaused()) socket.resume();
}

/** The socket goes once what was written to it is out. */
function destroyOnceFlushed(socket: Socket): void {
  if (socket.writableFinished) socket.destroy();
  else socket.once('finish', () => socket.destroy());
}

/** closeAfterAnswer is under way for `socket`. */
export const closingAfterAnswer = (socket: Socket): boolean => closing.has(socket);
