#!/usr/bin/env node
/**
 * Small requests through edge + connector processes over QUIC, and what each one costs in
 * quiche binding calls, packets and event-loop turns (issue 16: "count before choosing"),
 * beside HTTP/2 in the same run. wrk (32 keep-alive connections, 64-byte bodies) against the
 * edge's public listener; CPU per request from /proc/PID/stat of each process; binding calls
 * counted by a preload (bench/lib/quic-count.js) in edge and connector. The first QUIC tunnel runs
 * quiche on both sides (OXY_QUIC_IMPL / OXY_QUIC_SERVER_IMPL=quiche, set for every tunnel); three
 * more run the addon's ngtcp2 (the default): the connector's client (edge on quiche), the edge's
 * server (connector on quiche) and both; `--ngtcp2 0` leaves them
 * out, `--ngtcp2 both` keeps only the last. All are measured in turn each round; with `--mib N`
 * each round also moves N MiB down (GET) and up (chunked POST) through each with curl: MB/s and
 * CPU ms per MB of edge and connector. `--bin DIR` runs
 * another build's bin/run.js (alternate old/new builds on a busy machine); `--count 0` leaves
 * the preload out (its wrappers cost CPU of their own).
 *   npm run build && node bench/quic-small.js [--seconds 5] [--rounds 2] [--bin /tmp/old] [--count 1] [--ngtcp2 1|0|both] [--mib 0]
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { arg, cpuMicros, EDGE_RUN_LOOPBACK, fmt, SERVERS, spawnUntil, tunnelPortIn } from './lib/run.js';

const run = promisify(execFile);
const seconds = Number(arg('seconds', 5));
const rounds = Number(arg('rounds', 2));
const count = arg('count', '1') !== '0';
const ngtcp2 = arg('ngtcp2', '1');
const mib = Number(arg('mib', 0));
/** With --perf DIR: edge and connector run with --perf-basic-prof, recorded by perf (cpu-clock) during each measurement (DIR/<protocol>-<process>.data). */
const perfDir = arg('perf', undefined);
const root = resolve(arg('bin', fileURLToPath(new URL('..', import.meta.url))));
const bin = join(root, 'bin/run.js');
const preload = fileURLToPath(new URL('./lib/quic-count.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'oxy-quic-small-'));
const HOST = 'bench.example.com';
const children = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A tunnel: `client` / `server` name the connector's and the edge's QUIC library. */
async function start(protocol, originUrl, client = 'quiche', server = 'quiche') {
  const home = join(dir, `${protocol}-${client}-${server}`);
  const env = {
    ...process.env,
    OXY_HOME: home,
    NO_COLOR: '1',
    OXY_QUIC_COUNT_DIR: dir,
    OXY_QUIC_COUNT_ROOT: root,
    OXY_QUIC_IMPL: client,
    OXY_QUIC_SERVER_IMPL: server,
  };
  if (count && protocol === 'quic' && client === 'quiche' && server === 'quiche') env.NODE_OPTIONS = `--import ${preload}`;
  if (perfDir) env.NODE_OPTIONS = `${env.NODE_OPTIONS ?? ''} --perf-basic-prof`;
  for (const args of [
    ['edge', 'init'],
    ['tunnel', 'create', 'bench'],
    ['tunnel', 'route', 'dns', 'bench', HOST],
  ])
    execFileSync(process.execPath, [bin, ...args], { env: { ...env, NODE_OPTIONS: '' }, stdio: 'ignore' });
  const edge = await spawnUntil(
    process.execPath,
    [bin, ...EDGE_RUN_LOOPBACK, ...(protocol === 'quic' ? ['--quic'] : [])],
    /Public HTTP listener ready address=127\.0\.0\.1:(\d+)/,
    {
      env,
    },
  );
  children.push(edge.child);
  await sleep(300);
  const tunnelPort = tunnelPortIn(edge.output(), protocol);
  const connector = await spawnUntil(
    process.execPath,
    [bin, 'tunnel', 'run', '--edge', `127.0.0.1:${tunnelPort}`, '--protocol', protocol, '--url', originUrl, 'bench'],
    /(Registered tunnel connection[^\n]*\n[\s\S]*){4}/,
    { env },
  );
  children.push(connector.child);
  return { url: `http://127.0.0.1:${edge.match[1]}`, pids: { edge: edge.child.pid, connector: connector.child.pid } };
}

async function snapshot(pids) {
  const out = {};
  for (const pid of Object.values(pids)) {
    rmSync(join(dir, `${pid}.json`), { force: true });
    process.kill(pid, 'SIGUSR2');
  }
  for (const [k, pid] of Object.entries(pids)) {
    for (let i = 0; i < 100; i++) {
      try {
        out[k] = JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8'));
        break;
      } catch {
        await sleep(20);
      }
    }
  }
  return out;
}

async function wrk(url, pids, counted, recorded) {
  const args = ['-t2', '-c32', `-d${seconds}s`, '-H', `Host: ${HOST}`, `${url}/small`];
  await run('wrk', ['-t2', '-c32', '-d1s', ...args.slice(3)]);
  const c0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuMicros(p)]));
  const n0 = counted ? await snapshot(pids) : undefined;
  const perf =
    perfDir && recorded
      ? Object.entries(pids).map(([k, p]) =>
          execFile('perf', ['record', '-e', 'cpu-clock', '-g', '-o', join(perfDir, `${recorded}-${k}.data`), '-p', String(p), '--', 'sleep', String(seconds)]),
        )
      : [];
  const { stdout } = await run('wrk', args);
  await Promise.all(perf.map((c) => new Promise((r) => c.on('exit', r))));
  const requests = Number(/(\d+) requests in/.exec(stdout)[1]);
  const n1 = counted ? await snapshot(pids) : undefined;
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, (cpuMicros(p) - c0[k]) / requests]));
  const per = {};
  if (counted) {
    for (const k of Object.keys(pids)) {
      const a = n0[k];
      const b = n1[k];
      const calls = {};
      for (const [name, n] of Object.entries(b.calls)) {
        const d = (n - (a.calls[name] ?? 0)) / requests;
        if (d >= 0.05) calls[name] = Number(fmt(d, 2));
      }
      per[k] = {
        packetsOut: Number(fmt((b.packetsOut - a.packetsOut) / requests, 2)),
        ackOnlyOut: Number(fmt((b.smallOut - a.smallOut) / requests, 2)),
        packetsIn: Number(fmt((b.packetsIn - a.packetsIn) / requests, 2)),
        turns: Number(fmt((b.turns - a.turns) / requests, 2)),
        calls,
      };
    }
  }
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)[1]), requests, cpu, per };
}

/** One curl of --mib MiB down or up (chunked, from /dev/zero) through a tunnel: MB/s and CPU ms per MB of each process. */
async function bulk(url, pids, op) {
  const bytes = mib * 1024 * 1024;
  const c0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuMicros(p)]));
  const t0 = performance.now();
  const command =
    op === 'down'
      ? `curl -sf -o /dev/null -H 'Host: ${HOST}' ${url}/bytes/${bytes}`
      : `head -c ${bytes} /dev/zero | curl -sf -o /dev/null -H 'Host: ${HOST}' -T - ${url}/sink`;
  await new Promise((resolve, reject) => {
    const c = spawn('sh', ['-c', command], { stdio: 'ignore' });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${op} through ${url} failed (curl exit ${code})`))));
  });
  const mb = bytes / 1e6;
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, (cpuMicros(p) - c0[k]) / 1000 / mb]));
  return { mbps: mb / ((performance.now() - t0) / 1000), cpu };
}

function bulkLine(name, r) {
  return `${name} ${fmt(r.mbps, 0)} MB/s (edge ${fmt(r.cpu.edge, 2)} connector ${fmt(r.cpu.connector, 2)} ms/MB)`;
}

try {
  console.log(`# small requests, edge + connector processes, ${seconds} s of wrk x ${rounds} rounds; ${bin}; load ${fmt(loadavg()[0])}`);
  const origin = await spawnUntil(process.execPath, [SERVERS, 'http'], /ready (\d+)/);
  children.push(origin.child);
  const originUrl = `http://127.0.0.1:${origin.match[1]}`;
  const h2 = await start('http2', originUrl);
  const quic = await start('quic', originUrl);
  // The ngtcp2 sides make no quiche calls: only the all-quiche tunnel is counted.
  const others = [];
  if (ngtcp2 === '1') others.push({ name: 'ngtcp2 connector', t: await start('quic', originUrl, 'ngtcp2') });
  if (ngtcp2 === '1') others.push({ name: 'ngtcp2 edge', t: await start('quic', originUrl, 'quiche', 'ngtcp2') });
  if (ngtcp2 !== '0') others.push({ name: 'ngtcp2 both', t: await start('quic', originUrl, 'ngtcp2', 'ngtcp2') });
  for (let r = 0; r < rounds; r++) {
    const a = await wrk(h2.url, h2.pids, false, 'http2');
    const b = await wrk(quic.url, quic.pids, count, 'quic');
    const rest = [];
    for (const o of others) rest.push({ name: o.name, ...(await wrk(o.t.url, o.t.pids, false, `quic-${o.name.replace(' ', '-')}`)) });
    if (perfDir)
      writeFileSync(
        join(perfDir, `requests-${r + 1}.json`),
        JSON.stringify({ http2: a.requests, quic: b.requests, ...Object.fromEntries(rest.map((c) => [c.name, c.requests])) }),
      );
    const more = rest.map(
      (c) =>
        ` | QUIC/${c.name} ${fmt(c.rps, 0)} req/s (${fmt(c.rps / a.rps, 2)}× HTTP/2, ${fmt(c.rps / b.rps, 2)}× quiche), edge ${fmt(c.cpu.edge)} connector ${fmt(c.cpu.connector)}`,
    );
    console.log(
      `round ${r + 1} (load ${fmt(loadavg()[0])}): HTTP/2 ${fmt(a.rps, 0)} req/s, CPU µs/req edge ${fmt(a.cpu.edge)} connector ${fmt(a.cpu.connector)} | QUIC/quiche ${fmt(b.rps, 0)} req/s (${fmt(b.rps / a.rps, 2)}×), edge ${fmt(b.cpu.edge)} connector ${fmt(b.cpu.connector)}${more.join('')}`,
    );
    if (count) for (const [k, v] of Object.entries(b.per)) console.log(`  QUIC/quiche ${k} per request: ${JSON.stringify(v)}`);
    if (mib > 0) {
      for (const op of ['down', 'up']) {
        const parts = [bulkLine('HTTP/2', await bulk(h2.url, h2.pids, op)), bulkLine('QUIC/quiche', await bulk(quic.url, quic.pids, op))];
        for (const o of others) parts.push(bulkLine(`QUIC/${o.name}`, await bulk(o.t.url, o.t.pids, op)));
        console.log(`  ${mib} MiB ${op} (load ${fmt(loadavg()[0])}): ${parts.join(' | ')}`);
      }
    }
  }
} finally {
  for (const c of children) c.kill();
  rmSync(dir, { recursive: true, force: true });
}
