// A client of a test edge's public HTTP listener that writes before it reads, as a loaded host may
// schedule any client: for the tests of an answer that comes while the client still sends
// (answer-before-body, refusal-before-body).
import { execFileSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { until } from '../../helpers/until.js';

/** Bytes in the kernel's receive queue of the client socket `s` (ss's Recv-Q); -1 once a reset closed it (ss lists it no more). */
export function received(s: Socket): number {
  const out = execFileSync('ss', ['-Htn', 'src', `127.0.0.1:${s.localPort}`, 'dst', `127.0.0.1:${s.remotePort}`], { encoding: 'utf8' }).trim();
  return out ? Number(out.split(/\s+/)[1] ?? 0) : -1;
}

export const write = (s: Socket, b: Buffer | string): Promise<void> => new Promise<void>((r) => s.write(b, () => r()));

/**
 * Writes `first` (then `next`, once `ready` says so) without reading; once the answer is in its
 * receive queue (or a reset closed the socket), `rest` (8 MiB of "a" unless given) in 64 KiB
 * pieces; then it ends and reads. The answer read, and the error a write met.
 */
export async function sendBeforeReading(
  port: number,
  first: Buffer | string,
  { rest = Buffer.alloc(8 * 1024 * 1024, 0x61), next }: { rest?: Buffer; next?: { ready: () => boolean; bytes: Buffer | string } } = {},
): Promise<{ answer: string; writeError?: string }> {
  const s = connect(port, '127.0.0.1');
  s.pause();
  let writeError: string | undefined;
  s.on('error', (err: NodeJS.ErrnoException) => (writeError ??= err.code));
  await new Promise((r) => s.once('connect', r));
  await write(s, first);
  if (next) {
    await until(next.ready, 15_000, 'the request under way');
    await write(s, next.bytes);
  }
  await until(() => received(s) !== 0, 15_000, 'the answer in the client socket (or the reset)');
  for (let off = 0; off < rest.length && !s.destroyed; off += 64 * 1024) await write(s, rest.subarray(off, off + 64 * 1024));
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise((r) => s.once('close', r));
  if (!s.destroyed) s.end();
  s.resume();
  await closed;
  return { answer: Buffer.concat(chunks).toString('latin1'), writeError };
}
