// PktinfoUdpSocket on loopback (no privileges needed): batches, sources,
// destination addresses, replies from a chosen source, errors.
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';

import { NativeError, PktinfoUdpSocket, type UdpBatch } from '../../../src/engine/native/index.js';

const open: { close(): void }[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

function track<T extends { close(): void }>(socket: T): T {
  open.push(socket);
  return socket;
}

/** Collects batches until `wanted` datagrams arrived, or fails after `ms`. */
function collect(socket: PktinfoUdpSocket, wanted: number, ms = 5000): Promise<UdpBatch[]> {
  return new Promise((resolve, reject) => {
    const batches: UdpBatch[] = [];
    let seen = 0;
    const timer = setTimeout(() => {
      socket.off('batch', onBatch);
      reject(new Error(`got ${seen} of ${wanted} datagrams in ${ms} ms`));
    }, ms);
    const onBatch = (batch: UdpBatch) => {
      batches.push(batch);
      seen += batch.count;
      if (seen >= wanted) {
        clearTimeout(timer);
        socket.off('batch', onBatch);
        resolve(batches);
      }
    };
    socket.on('batch', onBatch);
  });
}

function payload(client: number, seq: number): Buffer {
  const b = Buffer.alloc(64, seq & 0xff);
  b.writeUInt16BE(client, 0);
  b.writeUInt32BE(seq, 2);
  return b;
}

describe('PktinfoUdpSocket on loopback', () => {
  for (const [family, host] of [
    ['IPv4', '127.0.0.1'],
    ['IPv6', '::1'],
  ] as const) {
    it(`${family}: 1,000 datagrams from 4 clients arrive in batches with the right source and destination`, async () => {
      const server = track(PktinfoUdpSocket.bind({ address: host, recvBufferSize: 4 << 20 }));
      const { port } = server.address();
      const clients = [0, 1, 2, 3].map(() => track(PktinfoUdpSocket.bind({ address: host })));
      const received = collect(server, 1000);
      for (const [c, client] of clients.entries()) {
        const datagrams = Array.from({ length: 250 }, (_, seq) => ({ data: payload(c, seq), address: host, port }));
        expect(client.sendBatch(datagrams)).toBe(250);
      }
      const batches = await received;

      const seen = new Set<string>();
      for (const batch of batches) {
        for (let i = 0; i < batch.count; i++) {
          const data = batch.payload(i);
          const c = data.readUInt16BE(0);
          const seq = data.readUInt32BE(2);
          expect(data.length).toBe(64);
          expect(batch.sourceAddress(i)).toBe(host);
          expect(batch.sourcePort(i)).toBe(clients[c]!.address().port);
          expect(batch.destinationAddress(i)).toBe(host);
          expect(batch.ifIndex(i)).toBeGreaterThan(0);
          expect(batch.truncated(i)).toBe(false);
          seen.add(`${c}/${seq}`);
        }
      }
      expect(seen.size).toBe(1000);
      // recvmmsg moved more than one datagram per wake-up.
      expect(batches.length).toBeLessThan(1000);
      expect(Math.max(...batches.map((b) => b.count))).toBeGreaterThan(1);
    });
  }

  it('a wildcard server replies from the address each client dialed (127.0.0.1/.2/.3)', async () => {
    const server = track(PktinfoUdpSocket.bind({ address: '0.0.0.0' }));
    const { port } = server.address();
    server.on('batch', (batch) => {
      const replies = [];
      for (let i = 0; i < batch.count; i++) {
        replies.push({
          data: Buffer.from(batch.destinationAddress(i)!),
          address: batch.sourceAddress(i),
          port: batch.sourcePort(i),
          sourceAddress: batch.destinationAddress(i),
        });
      }
      server.sendBatch(replies);
    });

    const client = track(dgram.createSocket('udp4'));
    await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
    const dialed = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
    const replies = new Map<string, { from: string; body: string }>();
    const done = new Promise<void>((resolve) => {
      client.on('message', (msg, rinfo) => {
        replies.set(msg.toString(), { from: rinfo.address, body: msg.toString() });
        if (replies.size === dialed.length) resolve();
      });
    });
    for (const address of dialed) client.send(Buffer.from('hi'), port, address);
    await done;
    for (const address of dialed) expect(replies.get(address)?.from).toBe(address);
  });

  it('a dual-stack socket on :: reports IPv4 peers as plain IPv4 and replies from the right family', async () => {
    const server = track(PktinfoUdpSocket.bind({ address: '::' }));
    const { port } = server.address();
    server.on('batch', (batch) => {
      server.sendBatch(
        [...batch].map((d) => ({
          data: Buffer.from(`${d.destinationAddress}`),
          address: d.sourceAddress,
          port: d.sourcePort,
          sourceAddress: d.destinationAddress,
        })),
      );
    });
    for (const [type, host] of [
      ['udp4', '127.0.0.1'],
      ['udp6', '::1'],
    ] as const) {
      const client = track(dgram.createSocket(type));
      await new Promise<void>((resolve) => client.bind(0, host, resolve));
      const reply = new Promise<[string, string]>((resolve) => client.once('message', (msg, rinfo) => resolve([msg.toString(), rinfo.address])));
      client.send(Buffer.from('x'), port, host);
      expect(await reply).toEqual([host, host]);
    }
  });

  it('flags datagrams longer than maxDatagramSize as truncated', async () => {
    const server = track(PktinfoUdpSocket.bind({ address: '127.0.0.1', maxDatagramSize: 100 }));
    const client = track(PktinfoUdpSocket.bind({ address: '127.0.0.1' }));
    const got = collect(server, 2);
    client.sendBatch([
      { data: Buffer.alloc(300, 1), address: '127.0.0.1', port: server.address().port },
      { data: Buffer.alloc(100, 2), address: '127.0.0.1', port: server.address().port },
    ]);
    const datagrams = (await got).flatMap((b) => [...b]);
    expect(datagrams.map((d) => [d.data.length, d.truncated])).toEqual([
      [100, true],
      [100, false],
    ]);
  });

  it('sets big socket buffers', () => {
    const socket = track(PktinfoUdpSocket.bind({ address: '127.0.0.1', recvBufferSize: 8 << 20, sendBufferSize: 4 << 20 }));
    // The kernel doubles the value; as root, SO_RCVBUFFORCE passes net.core.rmem_max.
    expect(socket.getRecvBufferSize()).toBeGreaterThanOrEqual(process.getuid?.() === 0 ? 16 << 20 : 1 << 16);
    expect(socket.getSendBufferSize()).toBeGreaterThan(0);
  });

  it('errors carry the errno name and the failing call', () => {
    const a = track(PktinfoUdpSocket.bind({ address: '127.0.0.1' }));
    let err: unknown;
    try {
      PktinfoUdpSocket.bind({ address: '127.0.0.1', port: a.address().port });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NativeError);
    expect(err).toMatchObject({ code: 'EADDRINUSE', syscall: 'bind', errno: 98 });
    expect((err as Error).message).toMatch(/^bind failed: EADDRINUSE .*127\.0\.0\.1 port \d+/);

    // A source address this host does not have: the first datagram goes, the second is refused.
    const port = a.address().port;
    try {
      a.sendBatch([
        { data: Buffer.from('ok'), address: '127.0.0.1', port },
        { data: Buffer.from('no'), address: '127.0.0.1', port, sourceAddress: '198.18.255.254' },
      ]);
      expect.unreachable();
    } catch (e) {
      expect(e).toMatchObject({ syscall: 'sendmmsg', index: 1 });
      expect(['EINVAL', 'EADDRNOTAVAIL', 'ENETUNREACH']).toContain((e as NativeError).code);
    }
    expect(() => a.send(Buffer.from('x'), port, 'not-an-ip')).toThrow(expect.objectContaining({ code: 'EINVAL', index: 0 }));
    expect(() => a.send(Buffer.from('x'), port, '::1')).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    a.close();
    expect(() => a.address()).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('pause() stops delivery until resume()', async () => {
    const server = track(PktinfoUdpSocket.bind({ address: '127.0.0.1' }));
    const client = track(PktinfoUdpSocket.bind({ address: '127.0.0.1' }));
    let delivered = 0;
    server.on('batch', (b) => (delivered += b.count));
    server.pause();
    client.send(Buffer.from('x'), server.address().port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 50));
    expect(delivered).toBe(0);
    const got = collect(server, 1);
    server.resume();
    await got;
    expect(delivered).toBe(1);
  });
});
