// QUIC tunnel transport on loopback, against baselines measured in the same run:
//   - single-stream throughput, upload (connector → edge) and download (edge → connector),
//     over QUIC, plain TLS over TCP, and the HTTP/2 tunnel transport;
//   - QUIC handshake time (median of sequential dials, retry included);
//   - QUIC datagrams per second (connector → edge, 1,200-byte payloads).
// QUIC runs twice: with UDP GSO (the default) and without, on the default library (ngtcp2;
// OXY_QUIC_IMPL=quiche / OXY_QUIC_SERVER_IMPL=quiche for quiche: the output names it). The edge side runs in a worker thread, so each end has its own event loop, as in
// production where they are different processes. Figures are printed, never asserted.
//
//   npx tsc -p tsconfig.json && node bench/quic-throughput.js [MB=128] [rounds=3]
import { once } from 'node:events';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const dist = new URL('../dist/', import.meta.url);
const { createEdgeIdentity } = await import(new URL('engine/transport/identity.js', dist).href);
const quic = await import(new URL('engine/transport/quic/index.js', dist).href);
let http2 = null;
try {
  http2 = await import(new URL('engine/transport/http2/index.js', dist).href);
} catch {
  // HTTP/2 transport not built: its column is left out.
}

const CHUNK = 256 * 1024;
const WARM_UP_BYTES = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------- edge (worker)

/** Sink/source on a stream: 'up' counts to end then answers 'ok'; 'down' sends `bytes` then ends. */
function serveStream(stream) {
  stream.on('error', () => {});
  let header = '';
  const onData = (chunk) => {
    header += chunk.toString('latin1');
    const nl = header.indexOf('\n');
    if (nl < 0) return;
    stream.off('data', onData);
    const [mode, count] = header.slice(0, nl).split(' ');
    const rest = Buffer.from(header.slice(nl + 1), 'latin1');
    if (mode === 'up') {
      let got = rest.length;
      stream.on('data', (c) => (got += c.length));
      stream.on('end', () => stream.end(`ok ${got}`));
    } else {
      stream.resume();
      writeBytes(stream, Number(count)).then(() => stream.end());
    }
  };
  stream.on('data', onData);
}

async function writeBytes(stream, total) {
  const chunk = Buffer.alloc(CHUNK, 0x5a);
  for (let sent = 0; sent < total; sent += CHUNK) {
    if (!stream.write(sent + CHUNK <= total ? chunk : chunk.subarray(0, total - sent))) await once(stream, 'drain');
  }
}

async function edgeMain() {
  const { kind, id } = workerData;
  if (kind === 'quic') {
    let dgrams = 0;
    const listener = await quic.listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1', gso: workerData.gso }, (conn) => {
      conn.onStream(serveStream);
      conn.onDatagram(() => dgrams++);
    });
    parentPort.on('message', (m) => {
      if (m === 'dgrams') parentPort.postMessage({ dgrams });
    });
    parentPort.postMessage({ port: listener.address.port });
  } else if (kind === 'tls') {
    const server = tls.createServer({ cert: id.certChain, key: id.key }, serveStream);
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    parentPort.postMessage({ port: server.address().port });
  } else if (kind === 'http2') {
    const listener = new http2.Http2TunnelListener({ cert: id.certChain, key: id.key });
    listener.on('connection', (conn) => conn.onStream(serveStream));
    const address = await listener.listen(0, '127.0.0.1');
    parentPort.postMessage({ port: address.port });
  }
}

// ---------------------------------------------------------------------------- connector (main)

async function startEdge(kind, id, gso = true) {
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { kind, id, gso } });
  const [{ port }] = await once(worker, 'message');
  return { worker, port };
}

/** One stream: upload `bytes` (until the edge says ok) or download them. Returns MB/s. */
async function transfer(openStream, direction, bytes) {
  const stream = await openStream();
  stream.on('error', (err) => console.error('stream error', err.message));
  const started = performance.now();
  if (direction === 'up') {
    stream.write(`up ${bytes}\n`);
    const reply = new Promise((resolve) => {
      let text = '';
      stream.on('data', (c) => (text += c));
      stream.on('end', () => resolve(text));
    });
    await writeBytes(stream, bytes);
    stream.end();
    const text = await reply;
    if (text !== `ok ${bytes}`) throw new Error(`edge answered ${text}`);
  } else {
    stream.write(`down ${bytes}\n`);
    let got = 0;
    stream.on('data', (c) => (got += c.length));
    await once(stream, 'end');
    stream.end();
    if (got !== bytes) throw new Error(`got ${got} of ${bytes}`);
  }
  const seconds = (performance.now() - started) / 1000;
  stream.destroy();
  return bytes / 1e6 / seconds;
}

/** One untimed transfer each way first: JIT, windows and congestion state warm for every transport alike. */
async function warmUp(openStream, bytes) {
  await transfer(openStream, 'up', bytes);
  await transfer(openStream, 'down', bytes);
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main() {
  const mb = Number(process.argv[2] ?? 128);
  const rounds = Number(process.argv[3] ?? 3);
  const bytes = mb * 1024 * 1024;
  const id = await createEdgeIdentity({ hostnames: ['localhost'], ips: ['127.0.0.1'] });
  const results = {};

  // Plain TLS over loopback TCP: the baseline.
  {
    const { worker, port } = await startEdge('tls', id);
    const open = () =>
      new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, ca: id.caCert }, () => resolve(s));
        s.once('error', reject);
      });
    results.tls = { up: [], down: [] };
    await warmUp(open, WARM_UP_BYTES);
    for (let r = 0; r < rounds; r++) {
      results.tls.up.push(await transfer(open, 'up', bytes));
      results.tls.down.push(await transfer(open, 'down', bytes));
    }
    await worker.terminate();
  }

  // HTTP/2 tunnel transport.
  if (http2) {
    const { worker, port } = await startEdge('http2', id);
    const conn = await http2.dialHttp2Tunnel({ host: '127.0.0.1', port, ca: id.caCert });
    results.http2 = { up: [], down: [] };
    await warmUp(() => conn.openStream(), WARM_UP_BYTES);
    for (let r = 0; r < rounds; r++) {
      results.http2.up.push(await transfer(() => conn.openStream(), 'up', bytes));
      results.http2.down.push(await transfer(() => conn.openStream(), 'down', bytes));
    }
    conn.close();
    await worker.terminate();
  }

  // QUIC without UDP GSO (one sendmmsg slot per packet), for comparison.
  {
    const { worker, port } = await startEdge('quic', id, false);
    const conn = await quic.dialQuic({ host: '127.0.0.1', port, ca: id.caCert, gso: false });
    results['quic-nogso'] = { up: [], down: [] };
    await warmUp(() => conn.openStream(), WARM_UP_BYTES);
    for (let r = 0; r < rounds; r++) {
      results['quic-nogso'].up.push(await transfer(() => conn.openStream(), 'up', bytes));
      results['quic-nogso'].down.push(await transfer(() => conn.openStream(), 'down', bytes));
    }
    conn.close();
    await worker.terminate();
  }

  // QUIC.
  const { worker, port } = await startEdge('quic', id);
  const handshakes = [];
  for (let i = 0; i < 20; i++) {
    const started = performance.now();
    const c = await quic.dialQuic({ host: '127.0.0.1', port, ca: id.caCert });
    handshakes.push(performance.now() - started);
    c.close();
  }
  const conn = await quic.dialQuic({ host: '127.0.0.1', port, ca: id.caCert });
  results.quic = { up: [], down: [] };
  await warmUp(() => conn.openStream(), WARM_UP_BYTES);
  for (let r = 0; r < rounds; r++) {
    results.quic.up.push(await transfer(() => conn.openStream(), 'up', bytes));
    results.quic.down.push(await transfer(() => conn.openStream(), 'down', bytes));
  }
  const qs = conn.quicStats();

  // Datagrams: blast for 2 s in slices that yield to the event loop, count what arrived.
  const payload = Buffer.alloc(1200, 1);
  let sent = 0;
  let dropped = 0;
  const until = performance.now() + 2000;
  while (performance.now() < until) {
    for (let i = 0; i < 256; i++) conn.sendDatagram(payload) ? sent++ : dropped++;
    await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 200));
  worker.postMessage('dgrams');
  const [{ dgrams }] = await once(worker, 'message');
  conn.close();
  await worker.terminate();

  const row = (name, r) => {
    const up = median(r.up);
    const down = median(r.down);
    const ratio = (x, base) => (base ? ` (${(x / base).toFixed(2)}× TLS)` : '');
    return `${name.padEnd(10)} up ${up.toFixed(0).padStart(5)} MB/s${name === 'tls' ? '' : ratio(up, median(results.tls.up))}   down ${down.toFixed(0).padStart(5)} MB/s${name === 'tls' ? '' : ratio(down, median(results.tls.down))}`;
  };
  console.log(
    `single stream, ${mb} MiB per transfer, median of ${rounds} rounds after a 64 MiB warm-up each way, loopback, edge in a worker thread; QUIC edge ${quic.quicServerImpl()} / connector ${quic.quicClientImpl()}`,
  );
  console.log(row('tls', results.tls));
  if (results.http2) console.log(row('http2', results.http2));
  console.log(row('quic-nogso', results['quic-nogso']));
  console.log(row('quic', results.quic));
  if (results.http2) {
    console.log(
      `quic / http2: up ${(median(results.quic.up) / median(results.http2.up)).toFixed(2)}×, down ${(median(results.quic.down) / median(results.http2.down)).toFixed(2)}×`,
    );
  }
  console.log(`quic path: rtt ${qs.rttMs.toFixed?.(2) ?? qs.rttMs} ms, cwnd ${qs.cwnd} B, ${qs.lost} packets lost of ${qs.sent}`);
  console.log(`quic handshake (retry + 1-RTT, new socket each): median ${median(handshakes).toFixed(2)} ms, min ${Math.min(...handshakes).toFixed(2)} ms`);
  console.log(
    `quic datagrams (1200 B, 2 s): sent ${(sent / 2).toFixed(0)}/s, received ${(dgrams / 2).toFixed(0)}/s (${((dgrams / Math.max(1, sent)) * 100).toFixed(1)}%), refused at send ${dropped}`,
  );
}

if (isMainThread) await main();
else await edgeMain();
