// A worker thread's env can end under the addon: Worker.terminate() stops whatever JS runs, then
// the env's loop turns once more with JS off and frees what the env owned (thread-safe functions,
// buffers lent to native code). The quick tunnel's connector is such a worker, and its stop
// aborted the whole process (exit 134) about 1 time in 3 over QUIC and 1 in 25 over HTTP/2.
// Each case below aborted on the build before the fix in every run of its rounds; each runs in a
// child process so an abort is seen as its exit status.
import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';

import { addonPath } from '../../../src/engine/native/binding.js';

/** Runs `main` with `worker` as an eval'd worker's source (both CommonJS), `addon` in scope of both. */
function runChild(main: string, worker: string): { status: number | null; signal: string | null; out: string } {
  const prelude = `const addon = require(${JSON.stringify(addonPath())});`;
  const script = `${prelude}\nconst WORKER = ${JSON.stringify(`${prelude}\n${worker}`)};\n(async () => {\n${main}\n})().then(() => console.log('done'), (e) => { console.log('failed ' + e.stack); process.exit(1); });`;
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 25_000 });
  return { status: result.status, signal: result.signal, out: `${result.stdout}${result.stderr}` };
}

it('a worker terminated while its UDP socket calls into JS: the call is dropped, the process lives', () => {
  // The worker's JS is busy in the batch callback when terminate() lands: V8 ends that call, and
  // node-addon-api made the failure fatal ("Error::Error napi_define_properties").
  const { status, out } = runChild(
    `
    const { Worker } = require('node:worker_threads');
    const dgram = require('node:dgram');
    for (let i = 0; i < 12; i++) {
      const w = new Worker(WORKER, { eval: true });
      const port = await new Promise((r) => w.once('message', r));
      const s = dgram.createSocket('udp4');
      let go = true;
      const flood = () => { if (!go) return; for (let k = 0; k < 50; k++) s.send(Buffer.alloc(1200), port, '127.0.0.1'); setImmediate(flood); };
      flood();
      await new Promise((r) => setTimeout(r, 20 + (i % 4) * 8));
      await w.terminate();
      go = false;
      s.close();
    }`,
    `
    const { parentPort } = require('node:worker_threads');
    const u = new addon.UdpSocket(4, { batchSize: 32, maxDatagramSize: 2048, maxReadsPerWakeup: 4 });
    u.bind('127.0.0.1', 0);
    u.start(() => { const t = Date.now(); while (Date.now() - t < 2) {} }, () => {}, () => {});
    u.setEvents(true, false);
    parentPort.postMessage(u.address().port);`,
  );
  expect(out).not.toMatch(/FATAL|terminate called/);
  expect(status).toBe(0);
  expect(out).toContain('done');
});

it('a worker terminated while its JS calls an addon method: the method returns, the process lives', () => {
  // Once terminate() is asked, the env refuses calls into JS while its JS still runs: a method
  // whose N-API call fails then threw, and node-addon-api's wrapper could not rethrow it into JS
  // ("terminate called after throwing an instance of 'Napi::Error'"). The define
  // NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS (binding.gyp) lets the method return instead.
  const { status, out } = runChild(
    `
    const { Worker } = require('node:worker_threads');
    for (let i = 0; i < 12; i++) {
      const w = new Worker(WORKER, { eval: true });
      await new Promise((r) => w.once('online', r));
      await new Promise((r) => setTimeout(r, 10 + (i % 4) * 10));
      await w.terminate();
    }`,
    `
    const u = new addon.UdpSocket(4, { batchSize: 4, maxDatagramSize: 2048, maxReadsPerWakeup: 1 });
    u.bind('127.0.0.1', 0);
    for (;;) u.address();`,
  );
  expect(out).not.toMatch(/FATAL|terminate called/);
  expect(status).toBe(0);
  expect(out).toContain('done');
});

// Relays on the addon's threads hold their env's thread-safe function: the first to finish after
// the env ended locked its freed mutex (uv_mutex_lock → abort(), no message).

/**
 * Rounds of: a worker starts relays on loopback connections to this process (`startRelays`, with
 * `connect()` and `addon` in scope), is terminated while they live; then the peers write and
 * close, so each relay finishes after its env is gone.
 */
function relaysOutliveWorker(startRelays: string, data: Record<string, unknown> = {}) {
  const { status, out } = runChild(
    `
    const { Worker } = require('node:worker_threads');
    const net = require('node:net');
    const peers = [];
    const server = net.createServer((s) => { s.on('error', () => {}); peers.push(s); s.write(Buffer.alloc(100000)); });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    for (let i = 0; i < 8; i++) {
      const w = new Worker(WORKER, { eval: true, workerData: { ...${JSON.stringify(data)}, port: server.address().port } });
      await new Promise((r) => w.once('message', r));
      await w.terminate();
      for (const p of peers.splice(0)) { p.write(Buffer.alloc(100000)); p.destroy(); }
      await new Promise((r) => setTimeout(r, 20));
    }
    server.close();`,
    `
    const { parentPort, workerData } = require('node:worker_threads');
    const net = require('node:net');
    const keep = [];
    const connect = async () => {
      const s = net.connect(workerData.port, '127.0.0.1');
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      s.pause();
      keep.push(s);
      return s;
    };
    (async () => {
      ${startRelays}
      parentPort.postMessage('ready');
    })();`,
  );
  expect(status).toBe(0);
  expect(out).toContain('done');
}

for (const placement of ['auto', 'thread'] as const) {
  it(`read-ahead relays (${placement}) of a terminated worker finish without reporting to it`, () => {
    relaysOutliveWorker(
      `for (let k = 0; k < 4; k++) {
        const s = await connect();
        const [, fd] = addon.readAhead(s._handle.fd, 1 << 20, () => {}, workerData.placement);
        const pair = new net.Socket({ fd, readable: true, writable: true });
        pair.on('error', () => {});
        pair.resume();
        keep.push(pair);
      }`,
      { placement },
    );
  });
}

it('splice relays of a terminated worker finish without reporting to it or writing its counters', () => {
  relaysOutliveWorker(
    `for (let k = 0; k < 2; k++) {
      const [a, b] = [await connect(), await connect()];
      addon.spliceSockets(a._handle.fd, b._handle.fd, 65536, new BigUint64Array(2), () => {}, k === 1);
    }`,
  );
});

// The device's packet relay runs on the addon's packet-relay thread (cpp/relay.cc on relay-loop.h)
// and tells JS through its env's thread-safe function: the env's end must take the relay off that
// thread before the env goes. A SEQPACKET pair stands in for the TUN (the relay reads and writes it
// the same way).
const relayUnderLoad = (ring: boolean) => `
    const fs = require('node:fs');
    const [tun, tunPeer] = addon.seqpacketPair();
    const [mine, peer] = addon.seqpacketPair();
    const relay = new addon.PacketRelay(tun, mine, { maxPacketSize: 2000, thread: true, ring: ${ring} });
    let told = 0;
    // Every message is not an IP packet (first byte '{'), so each is told to JS; JS is slow.
    relay.start(() => { told++; const t = Date.now(); while (Date.now() - t < 1) {} }, () => {}, () => {});
    const flood = () => {
      for (let k = 0; k < 64; k++) {
        try { fs.writeSync(peer, Buffer.from('{"n":' + k + '}')); } catch {}
        try { fs.writeSync(tunPeer, Buffer.alloc(100, 0x45)); } catch {}
      }
    };`;

// With io_uring (ring) the relay's reads are in flight in the kernel when its env ends: they are
// cancelled, and its buffers kept until they complete.
for (const ring of [false, true]) {
  it(`a packet relay (${ring ? 'io_uring' : 'epoll'}) in a terminated worker leaves the relay thread with its env; what it queued for JS is dropped`, () => {
    const { status, out } = runChild(
      `
    const { Worker } = require('node:worker_threads');
    for (let i = 0; i < 8; i++) {
      const w = new Worker(WORKER, { eval: true });
      await new Promise((r) => w.once('message', r));
      await new Promise((r) => setTimeout(r, 10 + (i % 4) * 10));
      await w.terminate();
    }`,
      `
    const { parentPort } = require('node:worker_threads');
    ${relayUnderLoad(ring)}
    const again = () => { flood(); setImmediate(again); };
    again();
    parentPort.postMessage('ready');`,
    );
    expect(out).not.toMatch(/FATAL|terminate called/);
    expect(status).toBe(0);
    expect(out).toContain('done');
  });

  it(`a process that exits while its packet relay (${ring ? 'io_uring' : 'epoll'}) relays exits with its own status`, () => {
    const { status, signal, out } = runChild(
      `
    ${relayUnderLoad(ring)}
    for (let i = 0; i < 20; i++) { flood(); await new Promise((r) => setImmediate(r)); }
    if (told === 0) throw new Error('no message was told to JS');
    process.exit(7);`,
      '',
    );
    expect({ status, signal }).toEqual({ status: 7, signal: null });
    expect(out).not.toMatch(/FATAL|terminate called/);
  });
}
