#!/usr/bin/env node
/**
 * CONNECT forward-proxy benchmark: throughput (one tunnel, bulk download) and requests/s
 * (a new CONNECT tunnel + one HTTP request per request, N concurrent clients), for
 *   direct        the client talks to the origin itself (the baseline)
 *   oxy           ConnectProxy (../dist) with no hooks
 *   oxy+psk       with examples/preshared-key.js (newCtx, CONNECT request hook, egress decision)
 *   oxy+status    with examples/proxy-status.js (established event + CONNECT response hook)
 *   tinyproxy     Debian's tinyproxy as a CONNECT proxy
 * each proxy in its own process, all measured in the same run. Printed, not asserted.
 *
 *   npm run build && node bench/connect-proxy.js [--mb 512] [--seconds 3] [--clients 32]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg, fmt, spawnUntil } from './lib/run.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const PSK = 'Proxy-Authorization: Preshared bench-key';

// ─── Child mode: one proxy process ─────────────────────────────────────────────
if (process.argv[2] === '--serve') {
  const hooksFile = process.argv[3];
  const { ConnectProxy } = await import('../dist/engine/edge/connect-proxy.js');
  const { HookRunner, loadHooks } = await import('../dist/engine/hooks/index.js');
  const { Egress } = await import('../dist/engine/edge/pipeline/index.js');
  const { createLogger } = await import('../dist/engine/observe/log.js');
  const log = createLogger({ level: 'warn' });
  const home = mkdtempSync(join(tmpdir(), 'oxy-bench-'));
  const runner = hooksFile === 'none' ? HookRunner.none(log) : await loadHooks(join(ROOT, 'examples', hooksFile), { home, location: 'bench', log });
  const { parseAllowEntry } = await import('../dist/engine/edge/proxy-policy.js');
  // The proxy denies by default: the benchmark's origins are on loopback.
  const proxy = await ConnectProxy.listen({ listen: '127.0.0.1:0', runner, egress: new Egress({ runner }), log, allow: [parseAllowEntry('127.0.0.0/8')] });
  console.log(`listening ${proxy.address.port}`);
  process.on('SIGTERM', () => {
    rmSync(home, { recursive: true, force: true });
    process.exit(0);
  });
} else {
  await main();
}

async function main() {
  const MB = Number(arg('mb', '512'));
  const SECONDS = Number(arg('seconds', '3'));
  const CLIENTS = Number(arg('clients', '32'));

  // Origins: a blaster (sends MB MiB per connection, then ends) and a tiny HTTP/1.1 server.
  const chunk = Buffer.alloc(1 << 20, 0x61);
  const blaster = createServer((s) => {
    s.on('error', () => undefined);
    let left = MB;
    const pump = () => {
      while (left > 0) {
        left--;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  const reply = Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
  const origin = createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => s.end(reply));
  });
  await Promise.all([blaster, origin].map((srv) => new Promise((r) => srv.listen(0, '127.0.0.1', r))));
  const blasterPort = blaster.address().port;
  const originPort = origin.address().port;

  const targets = [{ name: 'direct' }];
  const children = [];
  for (const [name, hooks] of [
    ['oxy', 'none'],
    ['oxy+psk', 'preshared-key.js'],
    ['oxy+status', 'proxy-status.js'],
  ]) {
    const { child, match } = await spawnUntil(process.execPath, [fileURLToPath(import.meta.url), '--serve', hooks], /listening (\d+)/, {
      env: { ...process.env, OXY_PRESHARED_KEY: 'bench-key' },
    });
    children.push(child);
    targets.push({ name, port: Number(match[1]), headers: hooks === 'preshared-key.js' ? [PSK] : [] });
  }
  let tinyDir;
  if (spawnSync('tinyproxy', ['-v']).status === 0) {
    tinyDir = mkdtempSync(join(tmpdir(), 'tinyproxy-'));
    const port = await freePort();
    writeFileSync(
      join(tinyDir, 'tinyproxy.conf'),
      [
        `Port ${port}`,
        'Listen 127.0.0.1',
        'Timeout 60',
        'MaxClients 1024',
        'Allow 127.0.0.1',
        'LogLevel Critical',
        `PidFile "${tinyDir}/pid"`,
        'DisableViaHeader Yes',
        '',
      ].join('\n'),
    );
    const child = spawn('tinyproxy', ['-d', '-c', join(tinyDir, 'tinyproxy.conf')], { stdio: 'ignore' });
    children.push(child);
    await waitListening(port);
    targets.push({ name: 'tinyproxy', port, headers: [] });
  } else {
    console.log('tinyproxy not installed (apt-get install tinyproxy): its column is missing');
  }

  try {
    console.log(`CONNECT proxy: ${MB} MiB download through one tunnel; new tunnel + 1 request each, ${CLIENTS} clients × ${SECONDS} s`);
    const results = [];
    for (const t of targets) {
      await throughput(t, blasterPort, MB); // warm-up
      const mbps = await throughput(t, blasterPort, MB);
      await requests(t, originPort, CLIENTS, 0.5); // warm-up
      const rps = await requests(t, originPort, CLIENTS, SECONDS);
      results.push({ ...t, mbps, rps });
    }
    const direct = results[0];
    const tiny = results.find((r) => r.name === 'tinyproxy');
    const rows = [['', 'MiB/s', '×direct', '×tinyproxy', 'req/s', '×direct', '×tinyproxy']];
    for (const r of results) {
      rows.push([
        r.name,
        fmt(r.mbps, 0),
        fmt(r.mbps / direct.mbps, 2),
        tiny ? fmt(r.mbps / tiny.mbps, 2) : '-',
        fmt(r.rps, 0),
        fmt(r.rps / direct.rps, 2),
        tiny ? fmt(r.rps / tiny.rps, 2) : '-',
      ]);
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    for (const row of rows) console.log(row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  } finally {
    for (const c of children) c.kill('SIGTERM');
    blaster.close();
    origin.close();
    if (tinyDir) rmSync(tinyDir, { recursive: true, force: true });
  }
}

/** A connected socket to `port` on loopback, through the proxy `t` when it has one (CONNECT done). */
function open(t, port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(t.port ?? port, '127.0.0.1');
    s.setNoDelay(true);
    s.once('error', reject);
    s.once('connect', () => {
      if (!t.port) return resolve(s);
      s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${t.headers.map((h) => `${h}\r\n`).join('')}\r\n`);
      let head = Buffer.alloc(0);
      const onData = (d) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        s.off('data', onData);
        if (!/^HTTP\/1\.[01] 200/.test(head.toString('latin1', 0, 12))) return reject(new Error(`${t.name}: ${head.toString('latin1', 0, end)}`));
        s.pause();
        if (head.length > end + 4) s.unshift(head.subarray(end + 4));
        resolve(s);
      };
      s.on('data', onData);
    });
  });
}

async function throughput(t, port, mb) {
  const started = process.hrtime.bigint();
  const s = await open(t, port);
  let bytes = 0;
  await new Promise((resolve, reject) => {
    s.on('data', (d) => (bytes += d.length));
    s.once('end', resolve);
    s.once('error', reject);
    s.resume();
  });
  s.destroy();
  if (bytes !== mb << 20) throw new Error(`${t.name}: got ${bytes} bytes`);
  return mb / (Number(process.hrtime.bigint() - started) / 1e9);
}

async function requests(t, port, clients, seconds) {
  const until = Date.now() + seconds * 1000;
  let done = 0;
  const one = async () => {
    const s = await open(t, port);
    await new Promise((resolve, reject) => {
      s.on('data', () => undefined);
      s.once('end', resolve);
      s.once('error', reject);
      s.resume();
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    s.destroy();
    done++;
  };
  const started = Date.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < until) await one();
    }),
  );
  return done / ((Date.now() - started) / 1000);
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitListening(port) {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}
