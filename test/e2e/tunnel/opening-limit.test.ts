// Real processes: the connector's one connection is at its stream limit (1000, held by idle
// keep-alive clients, each on its own http1 stream), so a new client's stream waits to open.
// Its upload meanwhile is held to the edge's budget (oxy_edge_http_opening_bytes ≤ 1 MiB and a
// read) instead of being read whole into the edge; once idle clients leave, it arrives byte-exact.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { OPENING_LIMIT } from '../../../src/engine/edge/http1-fast.js';
import { OxyProcess, startConnector, startEdge, useWebTunnel } from '../../helpers/processes.js';

const t = useWebTunnel();
let origin: http.Server;
let clients: net.Socket[];
beforeEach(async () => {
  clients = [];
  origin = http.createServer((req, res) => {
    const hash = createHash('sha256');
    let n = 0;
    req.on('data', (d: Buffer) => {
      hash.update(d);
      n += d.length;
    });
    req.on('end', () => res.end(req.method === 'POST' ? `${n} ${hash.digest('hex')}` : 'ok'));
  });
  origin.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
});
afterEach(async () => {
  for (const c of clients) c.destroy();
  origin.closeAllConnections();
  await new Promise<void>((r) => origin.close(() => r()));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A keep-alive client that sent one GET; `answered` once its response came. */
function idleClient(port: number): { socket: net.Socket; answered: Promise<void> } {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  clients.push(socket);
  socket.write('GET /idle HTTP/1.1\r\nHost: app.example.com\r\n\r\n');
  let got = '';
  const answered = new Promise<void>((resolve) =>
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.endsWith('\r\n\r\nok')) resolve();
    }),
  );
  return { socket, answered };
}

async function openingBytes(edge: OxyProcess): Promise<number> {
  const [, port] = await edge.waitFor(/Edge running metrics=127\.0\.0\.1:(\d+)/);
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(text.match(/^oxy_edge_http_opening_bytes (\d+)/m)?.[1] ?? Number.NaN);
}

it('an upload whose stream waits for a free slot is held to the budget, then arrives whole', async () => {
  const { edge, tunnelPort, httpPort } = await startEdge(t.home, ['--no-quic']);
  t.procs.push(edge);
  const { connector } = await startConnector(
    t.home,
    tunnelPort,
    ['--ha-connections', '1', '--metrics', '127.0.0.1:0', '--url', `http://127.0.0.1:${(origin.address() as net.AddressInfo).port}`, 'web'],
    1,
  );
  t.procs.push(connector);

  // 1000 idle clients: all but the internal streams' share are answered, the rest wait for a slot.
  const idle = Array.from({ length: 1000 }, () => idleClient(httpPort));
  let answered = 0;
  for (const c of idle) void c.answered.then(() => answered++);
  // Until the count stops moving for a second past 900 (bounded: a loaded machine answers in bursts).
  for (let i = 0, last = -1, quiet = 0; i < 300 && (quiet < 10 || answered <= 900); i++) {
    quiet = answered === last && answered > 0 ? quiet + 1 : 0;
    last = answered;
    await sleep(100);
  }
  expect(answered).toBeGreaterThan(900);
  expect(answered).toBeLessThan(1000);

  // The upload's stream queues behind them: the edge reads up to the budget, then waits.
  const size = 48 * 1024 * 1024;
  const client = net.connect(httpPort, '127.0.0.1');
  clients.push(client);
  let answer = '';
  client.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  client.write(`POST /up HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: ${size}\r\n\r\n`);
  const body = randomBytes(size);
  const sha = createHash('sha256').update(body).digest('hex');
  let sent = 0;
  const more = (): void => {
    while (sent < size) {
      const chunk = body.subarray(sent, sent + 64 * 1024);
      sent += chunk.length;
      if (!client.write(chunk)) return void client.once('drain', more);
    }
  };
  more();
  let held = 0;
  for (let i = 0; i < 100 && held <= OPENING_LIMIT / 2; i++) {
    await sleep(50);
    held = await openingBytes(edge);
  }
  await sleep(500);
  held = await openingBytes(edge);
  expect(sent).toBeLessThan(size);
  expect(held).toBeGreaterThan(OPENING_LIMIT / 2);
  expect(held).toBeLessThanOrEqual(OPENING_LIMIT + 64 * 1024);

  // Idle clients leave: their streams end, the queued opens go, the upload goes on.
  for (const c of idle.slice(0, 50)) c.socket.destroy();
  for (let i = 0; i < 300 && !answer.endsWith(`${size} ${sha}`); i++) await sleep(100);
  expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(answer.slice(-200)).toMatch(new RegExp(`\r\n\r\n${size} ${sha}$`));
  expect(await openingBytes(edge)).toBe(0);
  expect(edge.output).not.toMatch(/Bug:/);
}, 90_000);
