#!/usr/bin/env node
/**
 * Single-stream throughput of the HTTP/2 tunnel transport, edge→connector and
 * connector→edge, as a ratio to the same bytes over plain loopback TCP and plain TLS
 * measured in the same run (same process, same machine state). Prints figures; asserts
 * nothing.
 *
 *   npx tsc -p tsconfig.json && node bench/transport-throughput.js [--mb 200] [--runs 3]
 *
 * Each figure is the best of --runs runs (noise on a shared machine only slows runs down).
 * "h2 (Node defaults)" is the same transport with Node's default windows and frame size,
 * for reference.
 */
import net from 'node:net';
import tls from 'node:tls';
import { createEdgeIdentity } from '../dist/engine/transport/identity.js';
import { dialHttp2Tunnel, Http2TunnelListener } from '../dist/engine/transport/http2/index.js';

const args = new Map();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const MB = Number(args.get('mb') ?? 200);
const RUNS = Number(args.get('runs') ?? 3);
const TOTAL = MB * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);

function pump(writable, total) {
  return new Promise((resolve, reject) => {
    let sent = 0;
    writable.once('error', reject);
    const go = () => {
      while (sent < total) {
        const n = Math.min(CHUNK.length, total - sent);
        sent += n;
        if (!writable.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          writable.once('drain', go);
          return;
        }
      }
      writable.end();
      resolve();
    };
    go();
  });
}

function sink(readable, total) {
  return new Promise((resolve, reject) => {
    let got = 0;
    readable.on('data', (chunk) => {
      got += chunk.length;
    });
    readable.once('end', () => (got === total ? resolve() : reject(new Error(`received ${got} of ${total} bytes`))));
    readable.once('error', reject);
  });
}

/** MB/s moving TOTAL bytes from `from` to `to`. */
async function transfer(from, to) {
  const t0 = process.hrtime.bigint();
  await Promise.all([pump(from, TOTAL), sink(to, TOTAL)]);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return TOTAL / seconds / 1e6;
}

async function best(fn) {
  let top = 0;
  for (let i = 0; i < RUNS; i++) top = Math.max(top, await fn());
  return top;
}

/** A fresh connection pair per run; `accepted` = edge side, `dialed` = connector side. */
async function plainPair(kind, id) {
  const server = kind === 'tls' ? tls.createServer({ key: id.key, cert: id.certChain }) : net.createServer();
  const event = kind === 'tls' ? 'secureConnection' : 'connection';
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise((resolve) => server.once(event, resolve));
  const { port } = server.address();
  const dialed = kind === 'tls' ? tls.connect({ host: '127.0.0.1', port, ca: id.caCert }) : net.connect({ host: '127.0.0.1', port });
  await new Promise((resolve) => dialed.once(kind === 'tls' ? 'secureConnect' : 'connect', resolve));
  const edge = await accepted;
  for (const s of [edge, dialed]) s.setNoDelay(true);
  return {
    edge,
    connector: dialed,
    close: () => {
      edge.destroy();
      dialed.destroy();
      server.close();
    },
  };
}

async function h2Pair(id, tuning) {
  const listener = new Http2TunnelListener({ key: id.key, cert: id.certChain, ...tuning });
  const { port } = await listener.listen(0, '127.0.0.1');
  const edgeConn = new Promise((resolve) => listener.once('connection', resolve));
  const connector = await dialHttp2Tunnel({ host: '127.0.0.1', port, ca: id.caCert, caPin: id.caPin, ...tuning });
  const edge = await edgeConn;
  return {
    async streams(direction) {
      if (direction === 'down') {
        const accepted = connector.acceptStream({ timeoutMs: 10_000 });
        const e = await edge.openStream();
        return { edge: e, connector: await accepted };
      }
      const accepted = edge.acceptStream({ timeoutMs: 10_000 });
      const c = await connector.openStream();
      return { edge: await accepted, connector: c };
    },
    async close() {
      connector.close();
      edge.close();
      await Promise.all([edge.closed, connector.closed]);
      await listener.close();
    },
  };
}

async function measurePlain(kind, id, direction) {
  return best(async () => {
    const pair = await plainPair(kind, id);
    try {
      return direction === 'down' ? await transfer(pair.edge, pair.connector) : await transfer(pair.connector, pair.edge);
    } finally {
      pair.close();
    }
  });
}

async function measureH2(id, direction, tuning) {
  return best(async () => {
    const pair = await h2Pair(id, tuning);
    try {
      const s = await pair.streams(direction);
      // Each stream's other direction is ended at once, as a one-way transfer would.
      if (direction === 'down') {
        s.connector.end();
        s.edge.resume();
        return await transfer(s.edge, s.connector);
      }
      s.edge.end();
      s.connector.resume();
      return await transfer(s.connector, s.edge);
    } finally {
      await pair.close();
    }
  });
}

const NODE_DEFAULTS = {
  settings: { initialWindowSize: 65_535, maxFrameSize: 16_384 },
  connectionWindow: 65_535,
  maxSessionMemoryMb: 10,
};

const id = await createEdgeIdentity({ ips: ['127.0.0.1'] });
console.log(`transport throughput: ${MB} MB per transfer, best of ${RUNS}, one stream, loopback, one process`);
const rows = [];
for (const direction of ['down', 'up']) {
  const label = direction === 'down' ? 'edge→connector' : 'connector→edge';
  const tcp = await measurePlain('tcp', id, direction);
  const tlsRate = await measurePlain('tls', id, direction);
  const h2 = await measureH2(id, direction, {});
  const h2Default = await measureH2(id, direction, NODE_DEFAULTS);
  rows.push({ label, tcp, tls: tlsRate, h2, h2Default });
}

const fmt = (n) => n.toFixed(0).padStart(6);
const ratio = (a, b) => (a / b).toFixed(2).padStart(5);
console.log('');
console.log('direction        TCP MB/s  TLS MB/s  h2 MB/s  h2/TCP  h2/TLS  | h2 (Node defaults) MB/s  /TLS');
for (const r of rows) {
  console.log(
    `${r.label.padEnd(15)}  ${fmt(r.tcp)}    ${fmt(r.tls)}    ${fmt(r.h2)}   ${ratio(r.h2, r.tcp)}   ${ratio(r.h2, r.tls)}  |  ${fmt(r.h2Default)}                 ${ratio(r.h2Default, r.tls)}`,
  );
}
