#!/usr/bin/env node
/**
 * Per-stream CPU cost of the HTTP/2 tunnel transport alone (no HTTP parsing, no origin):
 * edge and connector in one process, `--concurrency` loops each opening a stream, writing a
 * small request and reading a 64-byte answer. Prints streams per CPU-second and µs of CPU
 * per stream (process.cpuUsage) — a figure the busy machine's load skews far less than
 * wall-clock requests/s.
 *   npm run build && node bench/h2-small.js [--seconds 3] [--concurrency 32]
 */
import { createEdgeIdentity } from '../dist/engine/transport/identity.js';
import { dialHttp2Tunnel, Http2TunnelListener } from '../dist/engine/transport/http2/index.js';
import { arg, fmt } from './lib/run.js';

const seconds = Number(arg('seconds', 3));
const concurrency = Number(arg('concurrency', 32));
const id = await createEdgeIdentity({ hostnames: ['localhost'], ips: ['127.0.0.1'] });
const listener = new Http2TunnelListener({ key: id.key, cert: id.certChain });
const addr = await listener.listen(0, '127.0.0.1');
const accepted = new Promise((resolve) => listener.once('connection', resolve));
const connector = await dialHttp2Tunnel({ host: '127.0.0.1', port: addr.port, servername: 'localhost', ca: id.caCert });
const edge = await accepted;
const answer = Buffer.alloc(64, 120);
connector.onStream((stream) => {
  stream.on('error', () => undefined);
  stream.on('data', () => undefined);
  stream.on('end', () => stream.end(answer));
});
const request = Buffer.alloc(200, 97);
async function one() {
  const stream = await edge.openStream();
  stream.end(request);
  for await (const _ of stream) void _;
}
const run = async (ms) => {
  const deadline = performance.now() + ms;
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        await one();
        n++;
      }
    }),
  );
  return n;
};
await run(500);
const c0 = process.cpuUsage();
const t0 = performance.now();
const n = await run(seconds * 1000);
const cpu = process.cpuUsage(c0);
const wall = (performance.now() - t0) / 1000;
const us = (cpu.user + cpu.system) / n;
console.log(
  `http2 streams: ${fmt(n / wall, 0)}/s wall, ${fmt(us, 1)} µs CPU per stream (edge + connector, one process; machine busy: load ${(await import('node:os')).loadavg()[0].toFixed(1)})`,
);
edge.close();
connector.close();
await listener.close();
