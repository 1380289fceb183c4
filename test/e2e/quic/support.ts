// Shared bits of the QUIC e2e tests.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import type dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, expect } from 'vitest';
import type { OutgoingDatagram, PktinfoUdpSocket } from '../../../src/engine/native/index.js';
import { OxyProcess, startEdge } from '../../helpers/processes.js';

/**
 * A Node dgram socket dressed as a PktinfoUdpSocket, for control experiments: it hands the
 * QUIC endpoint the same batches (one datagram each) but knows no destination address
 * and cannot choose a source — the kernel picks the reply's source, as for any dgram
 * server. Only what QuicEndpoint uses is implemented.
 */
export class DgramAsPktinfo extends EventEmitter {
  closed = false;

  constructor(private readonly socket: dgram.Socket) {
    super();
    socket.on('message', (msg, rinfo) => {
      const source = rinfo.address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
      this.emit('batch', {
        count: 1,
        truncated: () => false,
        payload: () => msg,
        sourcePort: () => rinfo.port,
        sourceAddress: () => source,
        destinationAddress: () => undefined,
      });
    });
  }

  address(): { family: 4 | 6; address: string; port: number } {
    const a = this.socket.address();
    return { family: a.family === 'IPv4' ? 4 : 6, address: a.address, port: a.port };
  }

  sendBatch(datagrams: readonly OutgoingDatagram[]): number {
    for (const d of datagrams) this.socket.send(d.data, d.port, d.address); // sourceAddress: not possible
    return datagrams.length;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
    this.emit('close');
  }

  asPktinfo(): PktinfoUdpSocket {
    return this as unknown as PktinfoUdpSocket;
  }
}

/** Records the source address of every datagram a client socket receives. */
export function recordSources(socket: PktinfoUdpSocket): Set<string> {
  const sources = new Set<string>();
  socket.on('batch', (batch) => {
    for (let i = 0; i < batch.count; i++) sources.add(batch.sourceAddress(i));
  });
  return sources;
}

export const sha256hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * The origin of the QUIC tunnel e2e tests: GET /bulk answers `bulk`, a POST answers
 * "<bytes> <sha256>" of its body, anything else "hello <path>". Started in a beforeAll, closed after.
 */
export function useBulkOrigin(bulk: Buffer): { readonly url: string } {
  const o = { url: '' };
  let origin: Server | undefined;
  beforeAll(async () => {
    origin = createServer((req, res) => {
      if (req.url === '/bulk') return void res.end(bulk);
      if (req.method === 'POST') {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => ((bytes += c.length), hash.update(c)));
        req.on('end', () => res.end(`${bytes} ${hash.digest('hex')}`));
        return;
      }
      res.end(`hello ${req.url}`);
    });
    await new Promise<void>((r) => origin!.listen(0, '127.0.0.1', r));
    o.url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  });
  afterAll(() => origin?.close());
  return o;
}

/** GET `path` of app.example.com through an edge's public listener. */
export const getVia = (port: number, path: string) =>
  request(`http://127.0.0.1:${port}${path}`, { headers: { host: 'app.example.com' } }).then(async (r) => ({
    status: r.statusCode,
    body: Buffer.from(await r.body.arrayBuffer()),
  }));

/**
 * An edge and a QUIC connector for tunnel `web` of `t` (each with its own env), once `connections`
 * registered. The connector serves `originUrl`, or the ingress rules of the config file `config`.
 */
export async function quicTunnel(
  t: { readonly home: string; readonly procs: OxyProcess[] },
  originUrl: string,
  o: { connections?: number; edgeEnv?: Record<string, string>; connectorEnv?: Record<string, string>; config?: string } = {},
) {
  const connections = o.connections ?? 2;
  const e = await startEdge(t.home, [], {}, o.edgeEnv);
  t.procs.push(e.edge);
  const c = new OxyProcess(
    t.home,
    [
      'tunnel',
      'run',
      '--edge',
      `127.0.0.1:${e.tunnelPort}`,
      '--protocol',
      'quic',
      '--ha-connections',
      String(connections),
      ...(o.config ? ['--config', o.config] : ['--url', originUrl]),
      'web',
    ],
    o.connectorEnv,
  );
  t.procs.push(c);
  for (let i = 0; i < connections; i++) await c.waitFor(new RegExp(`Registered tunnel connection connIndex=${i} [^\\n]*protocol=quic`));
  return { ...e, connector: c };
}

/** Through an edge's public listener: curl, 300 concurrent requests, `bulk` (the origin's) byte-exact down and up. */
export async function expectServes(httpPort: number, bulk: Buffer): Promise<void> {
  const curl = await promisify(execFile)('curl', ['-sS', '-H', 'Host: app.example.com', `http://127.0.0.1:${httpPort}/curl`]);
  expect(curl.stdout).toBe('hello /curl');

  const many = await Promise.all(Array.from({ length: 300 }, (_, i) => getVia(httpPort, `/r${i}`)));
  expect(many.map((r) => r.status)).toEqual(many.map(() => 200));
  expect(many.map((r) => r.body.toString())).toEqual(many.map((_, i) => `hello /r${i}`));

  const down = await getVia(httpPort, '/bulk');
  expect(down.status).toBe(200);
  expect(down.body.length).toBe(bulk.length);
  expect(sha256hex(down.body)).toBe(sha256hex(bulk));

  const up = await request(`http://127.0.0.1:${httpPort}/up`, { method: 'POST', body: bulk, headers: { host: 'app.example.com' } });
  expect(await up.body.text()).toBe(`${bulk.length} ${sha256hex(bulk)}`);
}

/** Chunked request bodies go in pieces of this size. */
const CHUNK = 1024 * 1024;

/** One client connection through the edge's public listener: requests in turn, each answer read whole (Content-Length framed); a body with Content-Length or in 1 MiB chunks. */
export class Client {
  readonly socket: Socket;
  #buf = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('error', () => undefined);
    this.socket.on('data', (c: Buffer) => ((this.#buf = Buffer.concat([this.#buf, c])), this.#wake?.()));
    this.socket.on('close', () => ((this.#closed = true), this.#wake?.()));
  }

  send(host: string, method: string, path: string, body?: Buffer, chunked = false): void {
    let head = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
    if (!body) return void this.socket.write(`${head}\r\n`);
    head += chunked ? 'Transfer-Encoding: chunked\r\n\r\n' : `Content-Length: ${body.length}\r\n\r\n`;
    this.socket.write(head);
    if (!chunked) return void this.socket.write(body);
    for (let off = 0; off < body.length; off += CHUNK) {
      const part = body.subarray(off, off + CHUNK);
      this.socket.write(`${part.length.toString(16)}\r\n`);
      this.socket.write(part);
      this.socket.write('\r\n');
    }
    this.socket.write('0\r\n\r\n');
  }

  /** The next answer, or undefined once the connection closed without one (10 s at most). */
  async answer(): Promise<{ status: number; body: string } | undefined> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const head = this.#buf.toString('latin1', 0, end);
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (this.#buf.length >= end + 4 + length) {
          const body = this.#buf.toString('latin1', end + 4, end + 4 + length);
          this.#buf = this.#buf.subarray(end + 4 + length);
          return { status: Number(head.slice(9, 12)), body };
        }
      }
      if (this.#closed) return undefined;
      await new Promise<void>((r) => {
        this.#wake = r;
        setTimeout(r, 200);
      });
    }
    throw new Error('no answer in 10 s');
  }

  async get(host: string, path: string): Promise<{ status: number; body: string } | undefined> {
    this.send(host, 'GET', path);
    return this.answer();
  }

  close(): void {
    this.socket.end();
  }
}

/**
 * Runs `hostile` while a good client sends requests to the public listener one after another,
 * each answered whole ("hello PATH"); resolves with how many it was served (at least one).
 */
export async function whileServed(httpPort: number, hostile: () => Promise<void>): Promise<number> {
  let good = 0;
  let stop = false;
  const client = (async () => {
    for (let i = 0; i < 2000 && !stop; i++) {
      expect((await getVia(httpPort, `/g${i}`)).body.toString()).toBe(`hello /g${i}`);
      good++;
    }
  })();
  try {
    await hostile();
  } finally {
    stop = true;
    await client;
  }
  expect(good).toBeGreaterThan(0);
  return good;
}
