import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { tail } from '../../helpers/attempts.js';
import { OxyProcess } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';
import { api, newToken } from '../dashboard/support.js';
import { getVia, sha256hex, whileServed } from './support.js';
import { AFTER_READS, BULK, converse, edgePumpTunnel, get, KEEP_STEPS, SLOW_MS } from './edge-pump-support.js';

const { t, tunnel, originUrl } = edgePumpTunnel();

/** An edge whose keep-alive timeout is 1 s, and a raw client of it: what it read, when its last bytes came and when it was closed. */
async function keepAliveClient() {
  const config = join(t.home, 'edge-keepalive.yml');
  writeFileSync(config, 'http-timeouts:\n  keep-alive-ms: 1000\n');
  const e = await tunnel({}, ['--config', config]);
  const s = connect(e.httpPort, '127.0.0.1');
  s.on('error', () => undefined);
  const seen = { got: '', closedAt: 0, lastDataAt: 0 };
  s.on('data', (c: Buffer) => {
    seen.got += c.toString('latin1');
    seen.lastDataAt = Date.now();
  });
  s.on('close', () => (seen.closedAt = Date.now()));
  return { e, s, seen };
}

describe('the ngtcp2 edge reads its HTTP/1 clients natively between requests', () => {
  it('answers keep-alive requests it read itself, then pipelined, bodied, closing and hostile ones, byte-identical to JS reads', async () => {
    const outputs: string[][] = [];
    for (const env of [{}, { OXY_EDGE_READS: '0' }] as Record<string, string>[]) {
      const e = await tunnel(env);
      const out: string[] = [];
      for (const last of AFTER_READS) out.push(await converse(e.httpPort, KEEP_STEPS, last, last.endsWith('Ho') || last === get('/half')));
      outputs.push(out);
      if (!('OXY_EDGE_READS' in env)) expect(e.edge.output).toMatch(/client of stream \d+ read by the transport/);
      else expect(e.edge.output).not.toMatch(/read by the transport/);
      expect(e.edge.child.exitCode).toBeNull();
      await Promise.all([e.edge.stop('SIGKILL'), e.connector.stop('SIGKILL')]);
    }
    // Node's server's pages carry the time.
    const [native, js] = outputs.map((out) => out.map((text) => text.replace(/\r\ndate: [^\r]*/gi, '')));
    for (const [i, last] of AFTER_READS.entries()) expect(native![i], JSON.stringify(last.slice(0, 80))).toBe(js![i]);
    // The keep-alive answers, then the pipelined ones, whole.
    expect(native![0]).toMatch(/hello \/k5HTTP\/1\.1 103 Early Hints[\s\S]*until the end$/);
    expect(native![9]).toMatch(/hello \/k5HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nhello \/half$/);
  }, 120_000);

  it('takes a body larger than the socket buffers, a client gone mid-request and one gone mid-head, while a good client is served; counts every answer', async () => {
    const e = await tunnel();
    const good = await whileServed(e.httpPort, async () => {
      // An upload on a connection the transport read: its body goes through JS, every byte.
      const head = `POST /up HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: ${BULK.length}\r\nConnection: close\r\n\r\n`;
      const upload = await converse(e.httpPort, KEEP_STEPS, Buffer.concat([Buffer.from(head), BULK]));
      expect(upload).toMatch(new RegExp(`\\r\\n\\r\\n${BULK.length} ${sha256hex(BULK)}$`));
      for (let i = 0; i < 5; i++) {
        // Gone mid-body and mid-head, after requests the transport read.
        for (const cut of [get('/gone', 'POST', 'Content-Length: 100000\r\n') + 'partial', 'GET /gone HTTP/1.1\r\nHost: app.exa']) {
          const s = connect(e.httpPort, '127.0.0.1');
          s.on('error', () => undefined);
          await new Promise<void>((resolve) => {
            let step = 0;
            let got = '';
            s.on('data', (c: Buffer) => {
              got += c.toString('latin1');
              if (got.endsWith(`hello /k${step}`) && ++step < 3) s.write(get(`/k${step}`));
              else if (step === 3) {
                s.write(cut);
                setTimeout(() => (s.resetAndDestroy(), resolve()), 20);
              }
            });
            s.write(get('/k0'));
          });
        }
      }
    });
    expect(e.edge.child.exitCode).toBeNull();
    expect((await getVia(e.httpPort, '/after')).body.toString()).toBe('hello /after');
    // Every answer counted, whoever read its request: 6 keep-alive + the upload, 3 per cut client, the good client's, /after.
    const scrape = () => request(`http://127.0.0.1:${e.metrics}/metrics`).then((r) => r.body.text());
    await expect
      .poll(async () => Number(/^oxy_edge_http_requests_total\{status="200"\} (\d+)$/m.exec(await scrape())?.[1]), { timeout: 5000 })
      .toBe(7 + 30 + good + 1);
  }, 120_000);

  it('a request it read for a connector that died is sent again on the replacement (JS takes over its liveness watch)', async () => {
    const e = await tunnel();
    const s = connect(e.httpPort, '127.0.0.1');
    s.on('error', () => undefined);
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString('latin1')));
    for (let i = 0; i < 3; i++) {
      s.write(get(`/k${i}`));
      await until(
        () => got.endsWith(`hello /k${i}`),
        5000,
        () => `the answer to /k${i}; read so far: ${tail(got)}`,
      );
    }
    expect(e.edge.output).toMatch(/client of stream \d+ read by the transport/);
    await e.connector.stop('SIGKILL');
    const sentAt = Date.now();
    s.write(get('/after-kill'));
    const replacement = new OxyProcess(t.home, ['tunnel', 'run', '--edge', `127.0.0.1:${e.tunnelPort}`, '--protocol', 'quic', '--url', originUrl(), 'web']);
    t.procs.push(replacement);
    const registeredAt = replacement.waitFor(/Registered tunnel connection connIndex=0 /, 60_000).then(
      () => Date.now(),
      () => 0,
    );
    await until(
      () => got.endsWith('hello /after-kill'),
      60_000,
      () =>
        `the answer to /after-kill; read so far: ${tail(got)}; the client socket ${s.destroyed ? 'closed' : 'open'}; replacement ${replacement.state()}; edge ${e.edge.state()}`,
    );
    // Answered soon after the request was sent or the replacement registered, whichever came
    // last (a connector's start takes seconds under load): not after an idle timeout.
    expect(Date.now() - Math.max(sentAt, await registeredAt)).toBeLessThan(10_000);
    expect(e.edge.output).toMatch(/Resending an idempotent request: its tunnel connection stopped answering host=app\.example\.com method=GET /);
    s.destroy();
  }, 120_000);

  it("counts every answer to a request it read, several per record, in the request counter and the dashboard's traffic", async () => {
    const token = await newToken(t.home);
    const e = await tunnel({}, ['--dashboard-listen', '127.0.0.1:0']);
    const base = (await e.edge.waitFor(/Dashboard ready .*url=(http:\/\/127\.0\.0\.1:\d+)\//))[1];
    // curl: 4 clients, 100 keep-alive requests each, one after the other: most read by the addon, several answered within a batch.
    const run = promisify(execFile);
    const outs = await Promise.all(
      [0, 1, 2, 3].map((c) => run('curl', ['-sS', '-H', 'Host: app.example.com', `http://127.0.0.1:${e.httpPort}/c${c}-[1-100]`])),
    );
    for (const [c, { stdout }] of outs.entries()) expect(stdout).toBe(Array.from({ length: 100 }, (_, i) => `hello /c${c}-${i + 1}`).join(''));
    expect(e.edge.output).toMatch(/client of stream \d+ read by the transport/);
    const scrape = () => request(`http://127.0.0.1:${e.metrics}/metrics`).then((r) => r.body.text());
    await expect.poll(async () => Number(/^oxy_edge_http_requests_total\{status="200"\} (\d+)$/m.exec(await scrape())?.[1]), { timeout: 5000 }).toBe(400);
    const traffic = async () =>
      (await api(base, 'GET', '/api/v1/traffic', { bearer: token })).body.hostnames.find((h: { hostname: string }) => h.hostname === 'app.example.com')
        ?.requests_total;
    await expect.poll(traffic, { timeout: 5000 }).toBe(400);
  }, 60_000);

  it('keeps the keep-alive timeout: a client whose requests the addon reads stays past it, an idle one is closed after it', async () => {
    const { e, s, seen } = await keepAliveClient();
    // 3 s of requests 300 ms apart: three times the keep-alive timeout, none of it idle that long.
    let lastWriteAt = 0;
    for (let i = 0; i < 10; i++) {
      lastWriteAt = Date.now();
      s.write(get(`/ka${i}`));
      await until(
        () => seen.got.endsWith(`hello /ka${i}`),
        5000,
        () => `the answer to /ka${i}; read so far: ${tail(seen.got)}; closed at ${seen.closedAt || 'not closed'}`,
      );
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(seen.closedAt).toBe(0);
    expect(seen.got).toMatch(/Keep-Alive: timeout=1\r\n/);
    expect(e.edge.output).toMatch(/client of stream \d+ read by the transport/);
    // Then idle: closed about a second after the last answer (Node checks its timers coarsely).
    // Measured from the last request's write, which comes before the answer that starts the idle
    // timer: a loaded machine only makes the gap longer (the 300 ms sleep may take far longer).
    // The upper bound counts from the last answer's arrival (the idle timer starts when it is
    // sent): a loaded machine can take seconds between the write and the answer.
    await expect.poll(() => seen.closedAt, { timeout: 30_000 }).toBeGreaterThan(0);
    expect(seen.closedAt - lastWriteAt).toBeGreaterThanOrEqual(900);
    expect(seen.closedAt - seen.lastDataAt).toBeLessThan(5000);
  }, 60_000);

  it('closes an idle client a keep-alive timeout after its last answer, also after its timer took back a request the addon forwarded', async () => {
    const { e, s, seen } = await keepAliveClient();
    // /k read by JS; /slow (answered after SLOW_MS) by the addon, and still in flight when the
    // keep-alive timer /k's answer armed fires: JS takes it back (its answer's end counts as one JS
    // armed, not in OWN_DONE); the last /k read by the addon again. Each written 200 ms after the
    // last answer (the addon gives a request back to JS while the stream's bytes after an answer
    // wait for JS); a round again if JS read /slow (the view's reload after the connector's
    // registration takes the client back).
    let lastWriteAt = 0;
    const ask = async (path: string): Promise<void> => {
      await new Promise((r) => setTimeout(r, 200));
      lastWriteAt = Date.now();
      s.write(get(path));
      await until(
        () => seen.got.endsWith(`hello ${path}`),
        SLOW_MS + 5000,
        () => `the answer to ${path}; read so far: ${tail(seen.got)}; closed at ${seen.closedAt || 'not closed'}`,
      );
    };
    const takenBack = /request on stream \d+ the transport forwarded taken back in flight/;
    for (let round = 0; round < 3 && !takenBack.test(e.edge.output); round++) {
      await ask(`/k${round}`);
      await ask(`/slow${round}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(e.edge.output).toMatch(takenBack);
    await ask('/last');
    expect(seen.closedAt).toBe(0);
    // Then idle: closed a keep-alive timeout after the last answer, not held (it was, for ever: the
    // taken-back request counted as one in flight at every later timeout).
    await expect.poll(() => seen.closedAt, { timeout: 15_000 }).toBeGreaterThan(0);
    expect(seen.closedAt - lastWriteAt).toBeGreaterThanOrEqual(900);
    expect(seen.closedAt - seen.lastDataAt).toBeLessThan(5000);
  }, 60_000);

  it('closes an idle client no sooner than a keep-alive timeout after the answer to a request JS took back in flight', async () => {
    const { e, s, seen } = await keepAliveClient();
    // As above, but the last answer is the taken-back /slow's: the addon's ACTIVE (its own last
    // answer, /k's or older) does not move with it. JS's #finished arms the keep-alive timeout at
    // that answer, so the timeout that reads the older ACTIVE comes a whole keep-alive timeout
    // after it and closes at once: on time, never early.
    const ask = async (path: string): Promise<void> => {
      await new Promise((r) => setTimeout(r, 200));
      s.write(get(path));
      await expect.poll(() => seen.got.endsWith(`hello ${path}`), { timeout: SLOW_MS + 5000 }).toBe(true);
    };
    const takenBack = /request on stream \d+ the transport forwarded taken back in flight/;
    for (let round = 0; round < 3 && !takenBack.test(e.edge.output); round++) {
      await ask(`/k${round}`);
      await ask(`/slow${round}`);
    }
    expect(e.edge.output).toMatch(takenBack);
    const answeredAt = seen.lastDataAt;
    await expect.poll(() => seen.closedAt, { timeout: 15_000 }).toBeGreaterThan(0);
    expect(seen.lastDataAt).toBe(answeredAt);
    console.log(`closed ${seen.closedAt - answeredAt} ms after the taken-back request's answer`);
    expect(seen.closedAt - answeredAt).toBeGreaterThanOrEqual(900);
    expect(seen.closedAt - answeredAt).toBeLessThan(5000);
  }, 60_000);
});
