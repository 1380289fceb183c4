// watchSilence (the connector's, the edge's and the device's liveness watchdog): a peer is silent
// only if no byte came from it, not when this process was too busy to read what came. Real
// sockets: the peer is a child process that writes every 20 ms while this process's event loop is
// blocked; its bytes wait in the socket, and the watchdog's timer fires before the poll phase.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { watchSilence } from '../../../src/engine/transport/common.js';

const SILENT_MS = 200;

/** A connection as the watchdog sees it: alive as long as bytes arrive on a socket. */
function peerOf(socket: Socket) {
  let heardAt = performance.now();
  let mark = 0;
  return {
    isClosed: false,
    probe: async () => true,
    unansweredMs(): number {
      if (socket.bytesRead !== mark) {
        mark = socket.bytesRead;
        heardAt = performance.now();
      }
      return performance.now() - heardAt;
    },
  };
}

/** A child process that connects to `port` and writes a byte every 20 ms until killed or told to stop. */
function writer(port: number): ChildProcess {
  return spawn(
    process.execPath,
    [
      '-e',
      `const s = require('net').connect(${port}, '127.0.0.1');
       const t = setInterval(() => s.write('x'), 20);
       process.stdin.on('data', () => clearInterval(t));`,
    ],
    { stdio: ['pipe', 'ignore', 'inherit'] },
  );
}

describe('watchSilence', () => {
  let server: Server | undefined;
  let child: ChildProcess | undefined;
  let stop: (() => void) | undefined;

  afterEach(() => {
    stop?.();
    child?.kill();
    server?.close();
  });

  async function connected(): Promise<Socket> {
    server = createServer();
    const accepted = new Promise<Socket>((resolve) => server!.once('connection', resolve));
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    child = writer((server.address() as { port: number }).port);
    const socket = await accepted;
    socket.on('data', () => undefined).on('error', () => undefined);
    return socket;
  }

  it('does not call a peer silent whose bytes came while this process was blocked', async () => {
    const socket = await connected();
    const silences: number[] = [];
    stop = watchSilence(peerOf(socket), { everyMs: 50, silentMs: SILENT_MS, onSilent: (ms) => silences.push(ms) });
    for (let round = 0; round < 3; round++) {
      // Blocked for twice the silence while the peer writes: its bytes wait unread in the socket.
      const until = performance.now() + 2 * SILENT_MS;
      while (performance.now() < until);
      await new Promise((r) => setTimeout(r, 120));
    }
    expect(silences).toEqual([]);
  });

  it('calls a peer silent once its bytes stop, once', async () => {
    const socket = await connected();
    const silences: number[] = [];
    stop = watchSilence(peerOf(socket), { everyMs: 50, silentMs: SILENT_MS, onSilent: (ms) => silences.push(ms) });
    await new Promise((r) => setTimeout(r, 150));
    expect(silences).toEqual([]);
    child!.stdin!.write('stop\n');
    const t0 = performance.now();
    while (silences.length === 0 && performance.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    expect(silences).toHaveLength(1);
    expect(silences[0]).toBeGreaterThan(SILENT_MS);
  });
});
