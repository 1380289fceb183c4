#!/usr/bin/env node
/**
 * What one small request/answer costs in the tunnel transport alone, on long-lived streams (the
 * shape of `http1` streams: one per client connection, WIRE.md §7): edge and connector in one
 * process, `--concurrency` streams each writing a 200-byte message and waiting for a 64-byte
 * answer, over HTTP/2 and over QUIC in the same run. Prints round trips/s and µs of CPU per
 * round trip (both ends, process.cpuUsage) — no HTTP parsing, no origin, no other process.
 *   npm run build && node bench/transport-pingpong.js [--seconds 3] [--concurrency 32] [--only quic]
 */
import { loadavg } from 'node:os';
import { dialHttp2Tunnel, Http2TunnelListener } from '../dist/engine/transport/http2/index.js';
import { createEdgeIdentity } from '../dist/engine/transport/identity.js';
import { dialQuic, listenQuic } from '../dist/engine/transport/quic/index.js';
import { arg, fmt } from './lib/run.js';

const seconds = Number(arg('seconds', 3));
const concurrency = Number(arg('concurrency', 32));
const only = arg('only', undefined);
const id = await createEdgeIdentity({ hostnames: ['localhost'], ips: ['127.0.0.1'] });
const request = Buffer.alloc(200, 97);
const answer = Buffer.alloc(64, 120);

async function http2Pair() {
  const listener = new Http2TunnelListener({ key: id.key, cert: id.certChain });
  const addr = await listener.listen(0, '127.0.0.1');
  const accepted = new Promise((resolve) => listener.once('connection', resolve));
  const connector = await dialHttp2Tunnel({ host: '127.0.0.1', port: addr.port, servername: 'localhost', ca: id.caCert });
  const edge = await accepted;
  return { edge, connector, close: () => (edge.close(), connector.close(), listener.close()) };
}

async function quicPair() {
  let resolveEdge;
  const accepted = new Promise((r) => (resolveEdge = r));
  const listener = await listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1' }, resolveEdge);
  const connector = await dialQuic({ host: '127.0.0.1', port: listener.address.port, ca: id.caCert });
  const edge = await accepted;
  return { edge, connector, close: () => (connector.close(), listener.close()) };
}

async function measure(name, pair) {
  pair.connector.onStream((stream) => {
    stream.on('error', () => undefined);
    // Each 200-byte message (however it arrives) gets one answer.
    let got = 0;
    stream.on('data', (chunk) => {
      got += chunk.length;
      while (got >= request.length) {
        got -= request.length;
        stream.write(answer);
      }
    });
    stream.on('end', () => stream.end());
  });
  const streams = [];
  for (let i = 0; i < concurrency; i++) {
    const s = await pair.edge.openStream();
    s.on('error', () => undefined);
    streams.push(s);
  }
  let n = 0;
  let deadline = 0;
  const loop = (s) =>
    new Promise((resolve) => {
      let got = 0;
      s.on('data', (chunk) => {
        got += chunk.length;
        if (got < answer.length) return;
        got -= answer.length;
        n++;
        if (performance.now() < deadline) s.write(request);
        else resolve();
      });
      s.write(request);
    });
  const run = async (ms) => {
    deadline = performance.now() + ms;
    n = 0;
    await Promise.all(streams.map((s) => (s.removeAllListeners('data'), loop(s))));
    return n;
  };
  await run(500);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const count = await run(seconds * 1000);
  const cpu = process.cpuUsage(c0);
  const wall = (performance.now() - t0) / 1000;
  for (const s of streams) s.end();
  await pair.close();
  const us = (cpu.user + cpu.system) / count;
  console.log(`${name}: ${fmt(count / wall, 0)} round trips/s, ${fmt(us, 1)} µs CPU per round trip (both ends)`);
  return us;
}

console.log(`# ${concurrency} long-lived streams, 200-byte message / 64-byte answer, ${seconds} s each, one process; machine load ${fmt(loadavg()[0])}`);
const h2 = only === 'quic' ? undefined : await measure('HTTP/2', await http2Pair());
const quic = only === 'http2' ? undefined : await measure('QUIC  ', await quicPair());
if (h2 && quic) console.log(`QUIC CPU per round trip ÷ HTTP/2's: ${fmt(quic / h2, 2)}`);
process.exit(0);
