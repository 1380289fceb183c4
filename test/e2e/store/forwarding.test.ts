/**
 * Edge-to-edge forwarding (issue 14), real processes on one PostgreSQL store: edge-a holds the
 * only connector of tunnel `web`; edge-b holds none and serves `web`'s hostname and private
 * route anyway, over a peer link to edge-a (mTLS with the edges' shared CA). Also: a tunnel no
 * edge holds is a prompt 502 (no ping-pong); a forwarded stream is never forwarded again; a
 * client without a peer certificate of the CA cannot open a peer link, while good clients are
 * served.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { LOOPBACK_EDGE, OxyProcess } from '../../helpers/processes.js';
import { createEdgeIdentity, createPeerCertificate } from '../../../src/engine/transport/identity.js';
import { dialHttp2Peer, dialHttp2Tunnel } from '../../../src/engine/transport/http2/index.js';
import { registerConnection } from '../../../src/engine/protocol/registration.js';
import { encodeRequestHeader, readStreamHeader, ResponseStatus } from '../../../src/engine/protocol/stream-header.js';

/** curl with a time limit; stdout as bytes and text. */
const curl = (args: string[]) =>
  new Promise<{ raw: Buffer; stdout: string; stderr: string }>((resolve) => {
    execFile('curl', ['--silent', '--show-error', '--max-time', '10', ...args], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 }, (_err, stdout, stderr) =>
      resolve({ raw: stdout, stdout: stdout.toString('latin1'), stderr: stderr.toString() }),
    );
  });

let home: string;
let cleanup: () => void;
const procs: OxyProcess[] = [];
let origin: http.Server;
const big = randomBytes(8 * 1024 * 1024);
const bigSha = createHash('sha256').update(big).digest('hex');
const edges: Record<'a' | 'b', { http: number; tunnel: number; proxy: number; proc: OxyProcess }> = {} as never;

async function startEdgeAt(location: 'a' | 'b') {
  const proc = new OxyProcess(home, [
    ...LOOPBACK_EDGE,
    '--proxy-listen',
    '127.0.0.1:0',
    '--proxy-allow',
    '127.0.0.1/32',
    '--location',
    `edge-${location}`,
    '--no-quic',
    '--loglevel',
    'debug',
  ]);
  procs.push(proc);
  const tunnel = await proc.waitFor(/Tunnel listener ready protocol=http2 address=127\.0\.0\.1:(\d+)/);
  const httpPort = await proc.waitFor(/Public HTTP listener ready address=127\.0\.0\.1:(\d+)/);
  const proxy = await proc.waitFor(/CONNECT proxy listener ready address=127\.0\.0\.1:(\d+)/);
  edges[location] = { http: Number(httpPort[1]), tunnel: Number(tunnel[1]), proxy: Number(proxy[1]), proc };
}

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  origin = http.createServer((req, res) => {
    if (req.url === '/big') return void res.end(big);
    if (req.method === 'POST') {
      const hash = createHash('sha256');
      let n = 0;
      req.on('data', (d: Buffer) => {
        hash.update(d);
        n += d.length;
      });
      req.on('end', () => res.end(`${n} ${hash.digest('hex')}`));
      return;
    }
    res.end(`origin ${req.url}`);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  const port = (origin.address() as AddressInfo).port;
  await oxyOk(home, ['vnet', 'add', 'lab']);
  await oxyOk(home, ['tunnel', 'create', 'web']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
  // Store data only: the private traffic goes to the origin on 127.0.0.1, inside this /32.
  await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'lab', '127.0.0.1/32', 'web']);
  await oxyOk(home, ['tunnel', 'create', 'old']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'old', 'old.example.com']);
  await oxyOk(home, ['tunnel', 'create', 'orphan']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'orphan', 'orphan.example.com']);
  await startEdgeAt('a');
  await startEdgeAt('b');
  // The connector dials edge-a only.
  const c = new OxyProcess(home, [
    'tunnel',
    'run',
    '--edge',
    `127.0.0.1:${edges.a.tunnel}`,
    '--protocol',
    'http2',
    '--ha-connections',
    '2',
    '--url',
    `http://127.0.0.1:${port}`,
    'web',
  ]);
  procs.push(c);
  // A connector of an older release (no http1 streams), on edge-a too.
  const old = new OxyProcess(
    home,
    ['tunnel', 'run', '--edge', `127.0.0.1:${edges.a.tunnel}`, '--protocol', 'http2', '--ha-connections', '1', '--url', `http://127.0.0.1:${port}`, 'old'],
    { OXY_HTTP1_STREAMS: '0' },
  );
  procs.push(old);
  for (let i = 0; i < 2; i++) await c.waitFor(new RegExp(`Registered tunnel connection connIndex=${i} `));
  await old.waitFor(/Registered tunnel connection connIndex=0 /);
});

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await new Promise((r) => origin?.close(r));
  cleanup?.();
});

const viaB = (args: string[]) => curl(['-i', '-H', 'Host: app.example.com', ...args.map((a) => a.replace('EDGE', `http://127.0.0.1:${edges.b.http}`))]);

describe('edge-to-edge forwarding', () => {
  it('an edge without a connection of the tunnel serves its hostname through the edge that holds one, and names it', async () => {
    // The registration reaches edge-b's view by NOTIFY: poll until it forwards.
    let r = await viaB(['EDGE/hello']);
    for (const t0 = Date.now(); !r.stdout.includes('origin /hello') && Date.now() - t0 < 5000; ) r = await viaB(['EDGE/hello']);
    expect(r.stdout).toMatch(/^HTTP\/1\.1 200/);
    expect(r.stdout.slice(-200)).toMatch(/\r\n\r\norigin \/hello$/);
    // Both paths name the serving edge in Proxy-Status: the keep-alive fast path (one stream per
    // client connection) and the per-request path (here HTTP/1.0; also upgrades, hooks, chunked uploads).
    expect(r.stdout).toMatch(/\r\nproxy-status: oxyctl; next-hop="edge-a"\r\n/i);
    const named = await viaB(['-0', 'EDGE/named']);
    expect(named.stdout).toMatch(/\r\nproxy-status: oxyctl; next-hop="edge-a"\r\n/i);
    expect(named.stdout.slice(-200)).toMatch(/\r\n\r\norigin \/named$/);
    // Both edges' logs name the other.
    await edges.b.proc.waitFor(/Peer link to edge open .*location=edge-a/);
    await edges.b.proc.waitFor(/Forwarding a request to the edge that holds its tunnel .*edge=edge-a/);
    await edges.a.proc.waitFor(/Peer link from edge accepted/);
    await edges.a.proc.waitFor(/Serving a forwarded stream .*from=edge-b .*kind=http1/);
    await edges.a.proc.waitFor(/Serving a forwarded stream .*from=edge-b .*kind=http /);
    // The direct edge adds no Proxy-Status.
    const direct = await curl(['-i', '-H', 'Host: app.example.com', `http://127.0.0.1:${edges.a.http}/hello`]);
    expect(direct.stdout).not.toMatch(/proxy-status/i);
  });

  it('carries large bodies byte-exact both ways', async () => {
    const down = await curl(['-H', 'Host: app.example.com', `http://127.0.0.1:${edges.b.http}/big`]);
    expect(createHash('sha256').update(down.raw).digest('hex')).toBe(bigSha);
    const file = join(home, 'up.bin');
    writeFileSync(file, big);
    const up = await viaB(['--data-binary', `@${file}`, 'EDGE/up']);
    expect(up.stdout.slice(-200)).toMatch(new RegExp(`\r\n\r\n${big.length} ${bigSha}$`));
    // Chunked (curl -T - sends it so, with Expect: 100-continue): forwarded per request, direct on the http1 stream.
    const chunked = ['-H', 'Transfer-Encoding: chunked', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`];
    const upB = await viaB([...chunked, 'EDGE/up']);
    expect(upB.stdout.slice(-200)).toMatch(new RegExp(`\r\n\r\n${big.length} ${bigSha}$`));
    const upA = await curl(['-i', '-H', 'Host: app.example.com', ...chunked, `http://127.0.0.1:${edges.a.http}/up`]);
    expect(upA.stdout.slice(-200)).toMatch(new RegExp(`\r\n\r\n${big.length} ${bigSha}$`));
  });

  it("a private TCP connection arriving on the other edge (CONNECT proxy, a route served by edge-a's connector) works", async () => {
    const port = (origin.address() as AddressInfo).port;
    const r = await curl(['-p', '-x', `127.0.0.1:${edges.b.proxy}`, '--proxy-header', 'Oxy-Vnet: lab', `http://127.0.0.1:${port}/private`]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('origin /private');
  });

  it('a keep-alive client through the other edge reaches an older connector (no http1 streams) by the per-request path', async () => {
    const viaBOld = () => curl(['-i', '-H', 'Host: old.example.com', `http://127.0.0.1:${edges.b.http}/one`, `http://127.0.0.1:${edges.b.http}/two`]);
    let r = await viaBOld();
    for (const t0 = Date.now(); !r.stdout.includes('origin /two') && Date.now() - t0 < 5000; ) r = await viaBOld();
    expect(r.stdout).toMatch(/^HTTP\/1\.1 200[\s\S]*\r\n\r\norigin \/oneHTTP\/1\.1 200[\s\S]*\r\n\r\norigin \/two$/);
    // A later connection too (edge-b learned that edge-a serves this tunnel per request).
    const again = await viaBOld();
    expect(again.stdout).toMatch(/\r\n\r\norigin \/two$/);
    expect(again.stdout).not.toMatch(/ 502 /);
  });

  it('a tunnel no edge holds is a prompt 502 from either edge, not a ping-pong', async () => {
    for (const e of [edges.a, edges.b]) {
      const t0 = Date.now();
      const r = await curl(['-i', '-H', 'Host: orphan.example.com', `http://127.0.0.1:${e.http}/`]);
      expect(r.stdout).toMatch(/^HTTP\/1\.1 502/);
      expect(r.stdout).toMatch(/proxy-status: oxyctl; error=destination_unavailable/i);
      // Answered without waiting on a peer: a dial (5 s) or a forwarded stream's header (10 s)
      // would take longer. A hang detector, not a speed check: 1 s failed at load 10 (1.25 s).
      expect(Date.now() - t0).toBeLessThan(4000);
    }
  });

  it('a forwarded stream is never forwarded again: the edge refuses a tunnel it does not hold itself', async () => {
    // A peer of the shared CA (the test holds its key, as every edge does) asks edge-b for `web`, which only edge-a holds.
    const dir = join(home, 'edge');
    const ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
    const peer = await createPeerCertificate(ca, readFileSync(join(dir, 'ca-key.pem'), 'utf8'), 'test-peer');
    const conn = await dialHttp2Peer({ host: '127.0.0.1', port: edges.b.tunnel, ca, ...peer });
    try {
      const tunnels = JSON.parse(await oxyOk(home, ['tunnel', 'list', '-o', 'json'])) as { id: string; name: string }[];
      const web = tunnels.find((t) => t.name === 'web')!.id;
      const stream = await conn.openStream();
      stream.on('error', () => undefined);
      stream.write(encodeRequestHeader({ kind: 'forward', destination: web, metadata: [] }));
      stream.end(encodeRequestHeader({ kind: 'http', destination: 'http://app.example.com/', metadata: [] }));
      const answer = await readStreamHeader(stream, { expect: 'response', timeoutMs: 5000 });
      expect(answer.status).toBe(ResponseStatus.DIAL_FAILED);
      expect(answer.message).toMatch(/edge-b holds no connection/);
      // An http1 stream (no response header) is reset instead.
      const http1 = await conn.openStream();
      const outcome = new Promise<string>((resolve) => {
        http1.on('error', () => resolve('reset'));
        http1.on('data', () => resolve('data'));
        http1.on('end', () => resolve('end'));
      });
      http1.write(encodeRequestHeader({ kind: 'forward', destination: web, metadata: [] }));
      http1.write(encodeRequestHeader({ kind: 'http1', destination: '', metadata: [] }));
      expect(await outcome).toBe('reset');
    } finally {
      // Node 20: closing an HTTP/2 session in the same turn as a peer's RST_STREAM reached a
      // stream's 'error' runs its native side out of memory (21 GB, OOM-killed); a turn later it is fine.
      await new Promise((r) => setImmediate(r));
      conn.close();
    }
  });

  it('a peer certificate does not register as a connector, even with the tunnel secret', async () => {
    const dir = join(home, 'edge');
    const ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
    const peer = await createPeerCertificate(ca, readFileSync(join(dir, 'ca-key.pem'), 'utf8'), 'would-be-connector');
    const tunnels = JSON.parse(await oxyOk(home, ['tunnel', 'list', '-o', 'json'])) as { id: string; name: string }[];
    const web = tunnels.find((t) => t.name === 'web')!.id;
    const secret = Buffer.from((JSON.parse(readFileSync(join(home, `${web}.json`), 'utf8')) as { TunnelSecret: string }).TunnelSecret, 'base64');
    const registered = edges.a.proc.count(/Registered tunnel connection/);
    const conn = await dialHttp2Tunnel({ host: '127.0.0.1', port: edges.a.tunnel, ca, ...peer });
    try {
      await expect(
        registerConnection(conn, { tunnelId: web, secret, connectorId: 'x', connIndex: 0, clientVersion: 't' }, { timeoutMs: 2000 }),
      ).rejects.toThrow();
    } finally {
      await new Promise((r) => setImmediate(r));
      conn.close();
    }
    expect(edges.a.proc.count(/Registered tunnel connection/)).toBe(registered);
    await edges.a.proc.waitFor(/Peer link from edge accepted peer=would-be-connector/);
  });

  it('only a peer certificate of the edge CA opens a peer link; others are refused while clients are served', async () => {
    const dir = join(home, 'edge');
    const ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
    const other = await createEdgeIdentity({ ips: ['127.0.0.1'] });
    const strangerPeer = await createPeerCertificate(other.caCert, other.caKey, 'stranger');
    const hostile = [
      // A peer certificate of another CA.
      strangerPeer,
      // The edge's own server certificate (the shared CA's, but not a peer certificate).
      { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') },
    ];
    let served = 0;
    let running = true;
    const load = (async () => {
      while (running) {
        const r = await viaB(['EDGE/during']);
        if (r.stdout.endsWith('origin /during')) served++;
        else throw new Error(`a client was not served: ${r.stdout.slice(0, 200)} ${r.stderr}`);
      }
    })();
    try {
      for (const creds of hostile) {
        await expect(dialHttp2Peer({ host: '127.0.0.1', port: edges.a.tunnel, ca, ...creds, timeoutMs: 3000 })).rejects.toThrow();
        // Raw TLS: the handshake may finish, but the edge closes the socket before any byte of HTTP/2.
        const closedEarly = await new Promise<boolean>((resolve) => {
          const s = tls.connect({ host: '127.0.0.1', port: edges.a.tunnel, ca, ...creds, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
          let bytes = 0;
          s.on('data', (d: Buffer) => (bytes += d.length));
          s.on('error', () => undefined);
          s.on('close', () => resolve(bytes === 0));
        });
        expect(closedEarly).toBe(true);
      }
      await edges.a.proc.waitFor(/Refused a client certificate on the tunnel listener/);
    } finally {
      running = false;
      await load;
    }
    expect(served).toBeGreaterThan(0);
  });
});
