// The connector's HTTP/2 origins (--http2-origin: undici's HTTP/2 over TLS) meet the Node TLS
// socket that never recovers from a failed write (nodejs/node#61304; the tunnel's own
// connections: killed-uploading.test.ts). An origin frozen (SIGSTOP) while request bodies stream
// to it (its windows wide open, so the connector's writes back up in TCP), then killed, resets
// the connection under a backed-up write: the session waited on it for good and the uploads never
// ended. Each round the uploads must end, the restarted origin be served within seconds, and the
// connector's open sockets return to what they were. The same over a unix socket (unix+tls:), where
// the kernel has no TCP state to ask: its peer's close (POLLHUP), with what it sent read or left
// unread for a whole check, tells.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { expect, it } from 'vitest';
import { Attempts } from '../../helpers/attempts.js';
import { freePort, killOnExit, openSockets, startConnector, startEdge, useWebTunnel } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';

const t = useWebTunnel();

const ROUNDS = 4;
const UPLOADS = 4;
const UPLOAD_BYTES = 16 * 1024 * 1024;

/**
 * An HTTP/2 (and HTTP/1.1) origin over TLS in a process of its own, on a TCP port or a unix socket
 * path: POST reads the body to its end, GET /half sends half an answer and kills its process,
 * anything else says hello and its HTTP version.
 */
async function startOrigin(where: number | string, home: string): Promise<ChildProcess> {
  const listen = typeof where === 'number' ? `${where}, '127.0.0.1'` : JSON.stringify(where);
  const code = `
    const http2 = require('node:http2');
    const { readFileSync, rmSync } = require('node:fs');
    const s = http2.createSecureServer({ cert: readFileSync(${JSON.stringify(join(home, 'edge', 'cert.pem'))}), key: readFileSync(${JSON.stringify(join(home, 'edge', 'key.pem'))}), allowHTTP1: true, settings: { initialWindowSize: 2 ** 31 - 1 } });
    s.on('request', (req, res) => {
      req.on('error', () => undefined);
      res.on('error', () => undefined);
      if (req.method === 'POST') req.resume().on('end', () => res.end('uploaded'));
      // Half an answer, then the process dies (its socket closed by the kernel).
      else if (req.url === '/half') (res.writeHead(200, { 'content-length': 1000 }), res.write('x'.repeat(500)), setTimeout(() => process.kill(process.pid, 'SIGKILL'), 100));
      else res.end('hello over HTTP/' + req.httpVersion);
    });
    // Windows past what the kernel buffers: a frozen origin leaves the connector's writes backed up in TCP, not in flow control.
    s.on('session', (session) => (session.on('error', () => undefined), session.setLocalWindowSize(2 ** 31 - 1)));
    // A killed origin's socket file stays: its successor takes the path over.
    if (typeof ${JSON.stringify(where)} === 'string') rmSync(${JSON.stringify(where)}, { force: true });
    s.listen(${listen}, () => process.stdout.write('ready\\n'));`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  killOnExit(child);
  await new Promise((resolve, reject) => {
    child.stdout!.once('data', resolve);
    child.once('exit', () => reject(new Error('the origin ended before it listened')));
  });
  return child;
}

it.each(['tcp', 'unix'])(
  'an HTTP/2 origin (%s) killed while uploads stream to it: the uploads end, its successor is served within seconds, no socket stays',
  async (kind) => {
    const e = await startEdge(t.home);
    t.procs.push(e.edge);
    const where = kind === 'tcp' ? await freePort() : join(tmpdir(), `oxy-h2-origin-${process.pid}.sock`);
    let origin = await startOrigin(where, t.home);
    const url = typeof where === 'number' ? `https://127.0.0.1:${where}` : `unix+tls:${where}`;
    const { connector } = await startConnector(t.home, e.tunnelPort, ['--url', url, '--no-tls-verify', '--http2-origin', '--ha-connections', '1', 'web'], 1);
    t.procs.push(connector);
    // What the GETs and uploads returned, for a failure message (the body says which HTTP the origin spoke).
    let tries = new Attempts();
    let uploadResults = new Attempts(UPLOADS);
    const get = () =>
      request(`http://127.0.0.1:${e.httpPort}/`, { headers: { host: 'app.example.com' }, headersTimeout: 5000, bodyTimeout: 5000 }).then(
        async (r) => tries.answer(r.statusCode, await r.body.text()),
        (err: Error) => tries.error(err),
      );
    const seen = () =>
      `tunnel http2, origin ${kind} over TLS (--http2-origin); connector ${connector.state()}; edge ${e.edge.state()}; GETs: ${tries}; uploads: ${uploadResults}`;
    // --http2-origin offers h2 in ALPN (it once did not: the connector's own TLS dial dropped undici's allowH2).
    expect(await get()).toBe('200 hello over HTTP/2.0');
    const before = openSockets(connector.child.pid!);

    const body = Buffer.alloc(UPLOAD_BYTES);
    for (let round = 0; round < ROUNDS; round++) {
      let ended = 0;
      tries = new Attempts();
      uploadResults = new Attempts(UPLOADS);
      const uploads = Array.from({ length: UPLOADS }, () =>
        request(`http://127.0.0.1:${e.httpPort}/`, { method: 'POST', headers: { host: 'app.example.com' }, body })
          .then(async (r) => uploadResults.answer(r.statusCode, await r.body.text()))
          .catch((err: Error) => uploadResults.error(err))
          .finally(() => ended++),
      );
      await new Promise((r) => setTimeout(r, 300));
      origin.kill('SIGSTOP');
      await new Promise((r) => setTimeout(r, 1000));
      const exited = new Promise((r) => origin.once('exit', r));
      origin.kill('SIGKILL');
      await exited;
      origin = await startOrigin(where, t.home);
      // A connection left stuck on its failed write would hold these until undici's 300 s timeouts.
      await until(
        () => ended === UPLOADS,
        10_000,
        () => `round ${round}: the uploads to the killed origin to end (${ended} of ${UPLOADS} did; ${seen()})`,
      );
      await until(
        async () => (await get()) === '200 hello over HTTP/2.0',
        10_000,
        () => `round ${round}: the restarted origin served (${seen()})`,
        200,
      );
      await Promise.all(uploads);
    }
    await until(() => openSockets(connector.child.pid!) <= before, 5000, "the connector's open sockets back to what they were", 100).catch(() => undefined);
    expect(openSockets(connector.child.pid!)).toBeLessThanOrEqual(before);
    origin.kill('SIGKILL');
    if (typeof where === 'string') rmSync(where, { force: true });
  },
  120_000,
);

// The connector's per-request path (undici) reported an origin that failed after its answer's head
// by destroying the answer's writer with the error, after it had taken its own 'error' listener
// off: an uncaught exception, and the connector exited ("other side closed"). Every later request
// got the edge's 502 "No connector": origin-killed-uploading's round 2 in CI (14:53), when an
// upload's answer head had come before the origin was killed.
it('an HTTP/2 origin killed mid-answer: that answer is cut, the connector serves on', async () => {
  const e = await startEdge(t.home);
  t.procs.push(e.edge);
  const port = await freePort();
  let origin = await startOrigin(port, t.home);
  const { connector } = await startConnector(
    t.home,
    e.tunnelPort,
    ['--url', `https://127.0.0.1:${port}`, '--no-tls-verify', '--http2-origin', '--ha-connections', '1', 'web'],
    1,
  );
  t.procs.push(connector);
  const tries = new Attempts();
  const get = async (path: string): Promise<string> => {
    try {
      const r = await request(`http://127.0.0.1:${e.httpPort}${path}`, { headers: { host: 'app.example.com' }, headersTimeout: 5000, bodyTimeout: 5000 });
      const text = await r.body.text();
      tries.answer(r.statusCode, text);
      return `${r.statusCode} ${text.length}`;
    } catch (err) {
      return tries.error(err);
    }
  };
  const exited = new Promise((r) => origin.once('exit', r));
  // The head and 500 of 1,000 bytes came: the client sees the answer cut, not a whole one.
  expect(await get('/half')).not.toMatch(/^200 1000$/);
  await exited;
  origin = await startOrigin(port, t.home);
  await until(
    async () => (await get('/')) === '200 19',
    10_000,
    () => `the restarted origin served (tunnel http2, origin tcp over TLS; connector ${connector.state()}; ${tries})`,
    200,
  );
  expect(connector.child.exitCode).toBeNull();
  expect(connector.output).not.toMatch(/uncaught exception/);
  origin.kill('SIGKILL');
});
