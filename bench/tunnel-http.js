#!/usr/bin/env node
/**
 * HTTP through the tunnel (HTTP/2 transport), each figure as a ratio to a baseline measured
 * in the same run, every server in a process of its own:
 *  - single-stream throughput, download and upload, vs the same bytes over plain loopback
 *    TCP and plain TLS (aim: >= 0.5 of TLS both ways);
 *  - requests/s with keep-alive and small bodies vs hitting the origin directly (aim >= 0.35);
 *  - memory per idle stream (edge + connector RSS growth over N open streams);
 *  - peak RSS of edge and connector while 1 GiB goes up and down (flat memory).
 *   npm run build && node bench/tunnel-http.js [--mib 256] [--big-mib 1024] [--seconds 5] [--idle 500] [--protocol http2]
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { Agent, Pool } from 'undici';
import { arg, best, EDGE_RUN_LOOPBACK, fmt, rssMiB, spawnUntil, tunnelPortIn, httpTransfer, oxyBench, SERVERS } from './lib/run.js';

const MiB = 1024 * 1024;
const mib = Number(arg('mib', 256));
const bigMib = Number(arg('big-mib', 1024));
const seconds = Number(arg('seconds', 5));
const idle = Number(arg('idle', 500));
const protocol = arg('protocol', 'http2');
const { home, children, oxy, spawnOxy } = oxyBench();
const HOST = 'bench.example.com';

async function rawTransfer(port, secure, op, n) {
  const socket = await new Promise((resolve, reject) => {
    const s = secure ? tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => resolve(s)) : net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  const t0 = performance.now();
  socket.write(`${op} ${n}`.padEnd(20));
  if (op === 'get') {
    let got = 0;
    for await (const chunk of socket) got += chunk.length;
    if (got !== n) throw new Error(`got ${got} of ${n}`);
  } else {
    const chunk = Buffer.alloc(256 * 1024, 3);
    for (let sent = 0; sent < n; sent += chunk.length) if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
    for await (const _ of socket) void _;
  }
  return n / MiB / ((performance.now() - t0) / 1000);
}

async function requestsPerSecond(origin, host) {
  const pool = new Pool(origin, { connections: 32, pipelining: 1 });
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (performance.now() < deadline) {
        const res = await pool.request({ path: '/small', method: 'GET', headers: { host } });
        await res.body.dump();
        done++;
      }
    }),
  );
  await pool.close();
  return done / seconds;
}

try {
  oxy('edge', 'init');
  oxy('tunnel', 'create', 'bench');
  oxy('tunnel', 'route', 'dns', 'bench', HOST);
  const origin = await spawnUntil(process.execPath, [SERVERS, 'http'], /ready (\d+)/);
  children.push(origin.child);
  const originUrl = `http://127.0.0.1:${origin.match[1]}`;
  const tcp = await spawnUntil(process.execPath, [SERVERS, 'tcp'], /ready (\d+)/);
  const tlsServer = await spawnUntil(process.execPath, [SERVERS, 'tls', join(home, 'edge')], /ready (\d+)/);
  children.push(tcp.child, tlsServer.child);
  const edge = await spawnOxy(EDGE_RUN_LOOPBACK, /Public HTTP listener ready address=127\.0\.0\.1:(\d+)/);
  const tunnelPort = tunnelPortIn(edge.output());
  const edgeUrl = `http://127.0.0.1:${edge.match[1]}`;
  const connector = await spawnOxy(
    ['tunnel', 'run', '--edge', `127.0.0.1:${tunnelPort}`, '--protocol', protocol, '--url', originUrl, 'bench'],
    /(Registered tunnel connection[^\n]*\n[\s\S]*){4}/,
  );

  const n = mib * MiB;
  const agent = new Agent({ connections: 4 });
  console.log(`# HTTP through the tunnel (${protocol}), ${mib} MiB per transfer, best of 3`);
  const rows = [];
  for (const op of ['get', 'put']) {
    const rawTcp = await best(3, () => rawTransfer(Number(tcp.match[1]), false, op, n));
    const rawTls = await best(3, () => rawTransfer(Number(tlsServer.match[1]), true, op, n));
    const direct = await best(3, () => httpTransfer(originUrl, HOST, op, n, agent));
    const tunnel = await best(3, () => httpTransfer(edgeUrl, HOST, op, n, agent));
    rows.push([op === 'get' ? 'download (origin → client)' : 'upload (client → origin)', rawTcp, rawTls, direct, tunnel]);
  }
  for (const [name, rawTcp, rawTls, direct, tunnel] of rows) {
    console.log(`${name}: tunnel ${fmt(tunnel)} MiB/s | plain TCP ${fmt(rawTcp)} | plain TLS ${fmt(rawTls)} | direct HTTP ${fmt(direct)}`);
    console.log(`  ratio tunnel/TLS ${fmt(tunnel / rawTls, 2)}  tunnel/TCP ${fmt(tunnel / rawTcp, 2)}  tunnel/direct-HTTP ${fmt(tunnel / direct, 2)}`);
  }

  const directRps = await requestsPerSecond(originUrl, HOST);
  const tunnelRps = await requestsPerSecond(edgeUrl, HOST);
  console.log(
    `requests/s (keep-alive, 32 concurrent, 64-byte bodies, ${seconds}s): tunnel ${fmt(tunnelRps, 0)} | direct ${fmt(directRps, 0)} | ratio ${fmt(tunnelRps / directRps, 2)}`,
  );

  // Idle streams: open a first round and close it (so allocator pools and JIT are warm),
  // then measure RSS around a second round held open.
  const idleRound = async () => {
    const pool = new Pool(edgeUrl, { connections: idle });
    const open = await Promise.all(Array.from({ length: idle }, () => pool.request({ path: '/idle', method: 'GET', headers: { host: HOST } })));
    await new Promise((r) => setTimeout(r, 1500));
    return { pool, open };
  };
  const closeRound = async ({ pool, open }) => {
    for (const r of open) r.body.on('error', () => undefined).destroy();
    await pool.destroy();
    await new Promise((r) => setTimeout(r, 1500));
  };
  await closeRound(await idleRound());
  const before = rssMiB(edge.child.pid) + rssMiB(connector.child.pid);
  const round = await idleRound();
  const after = rssMiB(edge.child.pid) + rssMiB(connector.child.pid);
  console.log(
    `memory per idle stream: ${fmt(((after - before) * 1024) / idle)} KiB (edge + connector RSS ${fmt(before)} → ${fmt(after)} MiB with ${idle} streams held open, after a warm-up round)`,
  );
  await closeRound(round);

  if (bigMib > 0) {
    let peak = 0;
    const base = { edge: rssMiB(edge.child.pid), connector: rssMiB(connector.child.pid) };
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(edge.child.pid) + rssMiB(connector.child.pid))), 100);
    const down = await httpTransfer(edgeUrl, HOST, 'get', bigMib * MiB, agent);
    const up = await httpTransfer(edgeUrl, HOST, 'put', bigMib * MiB, agent);
    clearInterval(sampler);
    console.log(
      `${bigMib} MiB down ${fmt(down)} MiB/s and up ${fmt(up)} MiB/s; edge + connector RSS ${fmt(base.edge + base.connector)} MiB before, peak ${fmt(peak)} MiB during`,
    );
  }
  await agent.close();
} finally {
  for (const c of children) c.kill('SIGKILL');
  rmSync(home, { recursive: true, force: true });
}
