#!/usr/bin/env node
/**
 * What each call into the quiche binding costs (issue 16: "measure before choosing"). Two
 * quiche connections in one process exchange packets in memory — no sockets — so the figures
 * are the binding's own: send() per packet, recv() per packet, streamSend() and streamRecv()
 * per call, at the default 1,350-byte payload and at LOOPBACK_UDP_PAYLOAD. Also the bulk
 * cost per MB through the binding alone, the ceiling any driver over it has.
 *   npm run build && node bench/quic-calls.js [--mib 64]
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { arg, fmt } from './lib/run.js';

const { createEdgeIdentity } = await import('../dist/engine/transport/identity.js');
const { buildQuicheConfig, quiche, LOOPBACK_UDP_PAYLOAD } = await import('../dist/engine/transport/quic/config.js');

const mib = Number(arg('mib', 64));
const id = await createEdgeIdentity({ hostnames: ['localhost'], ips: ['127.0.0.1'] });
const clientAddr = { host: '127.0.0.1', port: 40001 };
const serverAddr = { host: '127.0.0.1', port: 40002 };
const t = { send: [0, 0], recv: [0, 0], streamSend: [0, 0], streamRecv: [0, 0] };
const timed = (key, fn) => {
  const t0 = process.hrtime.bigint();
  const r = fn();
  t[key][0] += Number(process.hrtime.bigint() - t0);
  t[key][1]++;
  return r;
};

function pair(payload) {
  const tuning = { maxUdpPayloadSize: payload, maxRecvUdpPayloadSize: payload };
  const cc = buildQuicheConfig('client', { ca: id.caCert }, tuning, {});
  const sc = buildQuicheConfig('server', { cert: id.certChain, key: id.key }, tuning, {});
  const client = quiche.Connection.connect('localhost', randomBytes(20), clientAddr, serverAddr, cc);
  let server;
  const buf = Buffer.allocUnsafe(65536);
  /** Moves every packet `from` has to `to`; returns how many moved. */
  const move = (from, to, toAddr, fromAddr, timing) => {
    let n = 0;
    for (;;) {
      const r = timing ? timed('send', () => from.send(buf)) : from.send(buf);
      if (r === null) return n;
      const pkt = buf.subarray(0, r[0]);
      if (to === undefined) {
        server = quiche.Connection.accept(randomBytes(20), null, serverAddr, clientAddr, sc);
        to = server;
      }
      if (timing) timed('recv', () => to.recv(pkt, { to: toAddr, from: fromAddr }));
      else to.recv(pkt, { to: toAddr, from: fromAddr });
      n++;
    }
  };
  const flush = (timing) => {
    let moved;
    do moved = move(client, server, serverAddr, clientAddr, timing) + (server ? move(server, client, clientAddr, serverAddr, timing) : 0);
    while (moved > 0);
  };
  while (!client.isEstablished() || !server?.isEstablished()) {
    flush(false);
    if (!server) move(client, undefined, serverAddr, clientAddr, false);
  }
  return { client, server: server, flush };
}

function bulk(payload) {
  for (const k of Object.keys(t)) t[k] = [0, 0];
  const { client, server, flush } = pair(payload);
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const scratch = Buffer.allocUnsafe(256 * 1024);
  const total = mib * 1024 * 1024;
  let sent = 0;
  let got = 0;
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  while (got < total) {
    while (sent < total) {
      let n;
      try {
        n = timed('streamSend', () => client.streamSend(0, chunk, false));
      } catch {
        break; // Done: no credit until the peer's window update
      }
      sent += n;
      if (n < chunk.length) break;
    }
    flush(true);
    for (;;) {
      let r;
      try {
        r = timed('streamRecv', () => server.streamRecv(0, scratch));
      } catch {
        break; // Done: nothing readable
      }
      if (r === null) break;
      got += r[0];
    }
    flush(true);
  }
  const cpu = process.cpuUsage(c0);
  const seconds = (performance.now() - w0) / 1000;
  const per = (k) => `${fmt(t[k][0] / t[k][1] / 1000, 2)} µs × ${t[k][1]}`;
  console.log(
    `payload ${payload}: ${fmt(total / 1e6 / seconds, 0)} MB/s through the binding alone, ${fmt((cpu.user + cpu.system) / (total / 1e6), 0)} µs CPU per MB`,
  );
  console.log(`  send ${per('send')} | recv ${per('recv')} | streamSend ${per('streamSend')} | streamRecv ${per('streamRecv')}`);
}

console.log(`# quiche binding per-call costs, ${mib} MiB on one stream, in memory (machine load ${fmt(loadavg()[0])})`);
bulk(quiche.MAX_DATAGRAM_SIZE);
bulk(LOOPBACK_UDP_PAYLOAD);

/**
 * The calls a small request makes (issue 16, docs/decisions.md "QUIC per request"): the
 * connection's getters, readable() (a JS generator per call), and one 64-byte message each way
 * on an open stream — streamSend, send (one packet: quiche puts one STREAM frame per packet),
 * recv, streamRecv — plus 32 streams' messages to show the packets that makes.
 */
function small() {
  const { client, server, flush } = pair(quiche.MAX_DATAGRAM_SIZE);
  const buf = Buffer.allocUnsafe(65536);
  const scratch = Buffer.allocUnsafe(65536);
  const from = { host: '127.0.0.1', port: 40001 };
  const to = { host: '127.0.0.1', port: 40002 };
  client.streamSend(0, Buffer.from([1]), false);
  flush(false);
  for (const id of server.readable()) server.streamRecv(id, scratch);
  const N = 100_000;
  const each = (name, fn) => {
    for (let i = 0; i < 1000; i++) fn();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) fn();
    return `${name} ${fmt(Number(process.hrtime.bigint() - t0) / N / 1000, 2)}`;
  };
  const getters = [
    each('isReadable', () => server.isReadable()),
    each('streamReadable', () => server.streamReadable(0)),
    each('timeout', () => server.timeout()),
    each('peerError', () => server.peerError()),
    each('send (nothing to send)', () => server.send(buf)),
    each('readable() iterated', () => {
      for (const _ of server.readable()) void _;
    }),
  ];
  console.log(`  per call, µs: ${getters.join(' | ')}`);
  const message = Buffer.alloc(64, 1);
  const M = 20_000;
  const sum = { streamSend: 0, send: 0, recv: 0, streamRecv: 0 };
  const time = (k, fn) => {
    const t0 = process.hrtime.bigint();
    const r = fn();
    sum[k] += Number(process.hrtime.bigint() - t0);
    return r;
  };
  for (let i = 0; i < M; i++) {
    time('streamSend', () => client.streamSend(0, message, false));
    const r = time('send', () => client.send(buf));
    time('recv', () => server.recv(buf.subarray(0, r[0]), { to, from }));
    time('streamRecv', () => server.streamRecv(0, scratch));
    flush(false);
  }
  console.log(
    `  one 64-byte message, µs: ${Object.entries(sum)
      .map(([k, v]) => `${k} ${fmt(v / M / 1000, 2)}`)
      .join(' | ')}`,
  );
  for (let s = 1; s <= 32; s++) client.streamSend(4 * s, message, false);
  let packets = 0;
  for (let r = client.send(buf); r !== null; r = client.send(buf)) {
    packets++;
    server.recv(buf.subarray(0, r[0]), { to, from });
  }
  console.log(`  32 streams with 64 bytes each leave as ${packets} packets`);
}
console.log("# a small request's calls, 1,350-byte packets");
small();
