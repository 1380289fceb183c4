// The TLS name the connector sends to an HTTPS origin (issue 15): Go's choice by default, one
// per request Host with originRequest.matchSNItoHost, and a bounded set of per-name pools —
// Hosts are chosen by clients, so an unbounded cache would grow with every name they send.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Ingress } from '../../../src/engine/connector/ingress.js';
import { OriginProxy, SNI_DISPATCHERS } from '../../../src/engine/connector/origin.js';
import { createLogger } from '../../../src/engine/observe/log.js';
import { createEdgeIdentity } from '../../../src/engine/transport/identity.js';

const log = createLogger({ level: 'silent' });
let server: Server;
let port: number;
/** TLS connections the origin accepted, by the SNI they sent ('' for none). */
const handshakes = new Map<string, number>();
const total = () => [...handshakes.values()].reduce((a, b) => a + b, 0);

beforeAll(async () => {
  const id = await createEdgeIdentity({ ips: ['127.0.0.1'] });
  server = createServer({ cert: id.cert, key: id.key }, (req, res) => res.end(`sni=${(req.socket as TLSSocket).servername}`));
  server.on('secureConnection', (s: TLSSocket) => handshakes.set(s.servername || '', (handshakes.get(s.servername || '') ?? 0) + 1));
  // Node's default (5 s, sent as `Keep-Alive: timeout=5`: the connector then keeps an idle
  // connection 4 s) closed h0's connection while the 64 other names were served at load > 15,
  // and h0 dialled again (66 handshakes, not 65). The counts must follow from the pools alone.
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function get(proxy: OriginProxy, host: string): Promise<string> {
  const rule = proxy.ingress.match(host, '/');
  const res = await proxy.proxyHttp(rule, { method: 'GET', host, path: '/', headers: [['host', host]] }, null);
  let text = '';
  for await (const chunk of res.body!) text += chunk;
  await new Promise((r) => setImmediate(r)); // undici frees the connection just after the body's end
  return text;
}

it('without matchSNItoHost, requests with different Hosts share one connection and send no SNI to an IP origin', async () => {
  handshakes.clear();
  const proxy = new OriginProxy(Ingress.parse([{ service: `https://127.0.0.1:${port}` }], { noTLSVerify: true }), log);
  for (const host of ['a.example.com', 'b.example.com', 'a.example.com', 'b.example.com']) expect(await get(proxy, host)).toBe('sni=false');
  expect(total()).toBe(1); // undici re-dialled whenever the Host changed, and sent it as SNI
  await proxy.close();
});

it(`matchSNItoHost: a pool per name, at most ${SNI_DISPATCHERS} per rule, the least recently used closed first`, async () => {
  handshakes.clear();
  const proxy = new OriginProxy(Ingress.parse([{ service: `https://127.0.0.1:${port}` }], { noTLSVerify: true, matchSNItoHost: true }), log);
  const hosts = Array.from({ length: SNI_DISPATCHERS + 1 }, (_, i) => `h${i}.example.com`);
  // h0, then h1..h64 with h0 used again in between: h1 is the least recently used when h64 arrives.
  expect(await get(proxy, hosts[0])).toBe('sni=h0.example.com');
  for (const host of hosts.slice(1, SNI_DISPATCHERS)) expect(await get(proxy, host)).toBe(`sni=${host}`);
  expect(await get(proxy, hosts[0])).toBe('sni=h0.example.com');
  expect(await get(proxy, hosts[SNI_DISPATCHERS])).toBe(`sni=${hosts[SNI_DISPATCHERS]}`);
  expect(total()).toBe(SNI_DISPATCHERS + 1);
  expect(handshakes.get('h0.example.com')).toBe(1); // kept: used recently
  expect(await get(proxy, hosts[1])).toBe('sni=h1.example.com');
  expect(handshakes.get('h1.example.com')).toBe(2); // its pool was closed: a new connection
  await proxy.close();
});
