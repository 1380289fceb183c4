// Issue 12 item 7: the CONNECT proxy is no open relay. Without hooks that decide and without
// --proxy-allow it refuses every destination; an allow list opens only what it names; the edge
// host's own addresses open only to entries that name them, and the edge's own listeners
// (its loopback /metrics came back through it) never — by CONNECT or by an absolute-URI GET.
// Every accepted CONNECT is logged at info.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxy, tempHome } from '../../helpers/cli.js';
import { OxyProcess, LOOPBACK_EDGE } from '../../helpers/processes.js';
import { curl, receivedHeaders, startOrigin, type Origin } from './support.js';

let home: { home: string; cleanup: () => void };
let origin: Origin;
const procs: OxyProcess[] = [];

async function proxyEdge(args: string[]): Promise<{ edge: OxyProcess; proxy: string; metricsPort: number; httpPort: number }> {
  const edge = new OxyProcess(home.home, [...LOOPBACK_EDGE, '--proxy-listen', '127.0.0.1:0', ...args]);
  procs.push(edge);
  const proxy = await edge.waitFor(/CONNECT proxy listener ready address=127\.0\.0\.1:(\d+)/);
  const http = await edge.waitFor(/Public HTTP listener ready address=127\.0\.0\.1:(\d+)/);
  const metrics = await edge.waitFor(/Edge running metrics=127\.0\.0\.1:(\d+)/);
  return { edge, proxy: `http://127.0.0.1:${proxy[1]}`, metricsPort: Number(metrics[1]), httpPort: Number(http[1]) };
}

/** CONNECT through the proxy (-p) or an absolute-URI GET (no -p): the proxy's status, and its Proxy-Status. */
async function via(proxy: string, url: string, connect = true): Promise<{ status: number; proxyStatus?: string; body: string }> {
  const r = await curl(['-v', ...(connect ? ['-p'] : []), '-x', proxy, url]);
  const heads = r.stderr.split(/\r?\n/).filter((l) => /^< HTTP\//.test(l));
  const status = Number(heads[0]?.split(' ')[2] ?? 0);
  const proxyStatus = receivedHeaders(r.stderr)
    .find((h) => /^proxy-status:/i.test(h))
    ?.replace(/^proxy-status:\s*/i, '');
  return { status: status === 200 && connect ? Number(heads[1]?.split(' ')[2] ?? 0) || 200 : status, proxyStatus, body: r.stdout };
}

beforeAll(async () => {
  home = tempHome();
  origin = await startOrigin();
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  await origin?.close();
  home?.cleanup();
});

describe('the CONNECT proxy denies by default', () => {
  it('without --proxy-allow or deciding hooks: every destination refused, CONNECT and GET alike', async () => {
    const { proxy } = await proxyEdge([]);
    for (const connect of [true, false]) {
      const r = await via(proxy, `http://127.0.0.1:${origin.port}/`, connect);
      expect(r.status).toBe(403);
      expect(r.proxyStatus).toMatch(/^oxyctl; error=destination_ip_prohibited; details=".*--proxy-allow/);
    }
    // Refused before any lookup: a name answers 403 like an address, never a DNS error.
    const named = await via(proxy, 'http://nothing.invalid:80/');
    expect(named.status).toBe(403);
    expect(named.proxyStatus).toMatch(/error=destination_ip_prohibited/);
    expect(origin.seen).toHaveLength(0);
  });

  it('hooks that only rewrite requests (http.handleRequest) do not open it', async () => {
    const rewrite = join(home.home, 'rewrite.js');
    writeFileSync(rewrite, `export function start() { return { http: { handleRequest(head) { head.headers.push(['X-Seen', '1']); } } }; }\n`);
    const { proxy } = await proxyEdge(['--hooks', rewrite]);
    for (const connect of [true, false]) {
      const r = await via(proxy, `http://127.0.0.1:${origin.port}/`, connect);
      expect(r.status).toBe(403);
      expect(r.proxyStatus).toMatch(/allows no destinations/);
    }
  });

  it('a catch-all allow list opens neither the edge host nor its listeners', async () => {
    const e = await proxyEdge(['--proxy-allow', '0.0.0.0/0', '--proxy-allow', '::/0']);
    for (const url of [
      `http://127.0.0.1:${origin.port}/`,
      `http://localhost:${origin.port}/`,
      `http://[::ffff:127.0.0.1]:${origin.port}/`,
      `http://127.0.0.1:${e.metricsPort}/metrics`,
    ]) {
      for (const connect of [true, false]) expect((await via(e.proxy, url, connect)).status, url).toBe(403);
    }
    // The refusal names an IPv6 destination as one (bracketed), not as "::1:PORT".
    const v6 = await via(e.proxy, `http://[::1]:${origin.port}/`);
    expect(v6.status).toBe(403);
    expect(v6.proxyStatus).toContain(`details="[::1]:${origin.port} is not in the proxy's allow list"`);
    expect(origin.seen).toHaveLength(0);
  });

  it("an entry naming loopback opens it, on its ports only; the edge's own listeners stay closed; accepted CONNECTs are logged", async () => {
    const e = await proxyEdge(['--proxy-allow', `127.0.0.0/8:${origin.port}`, '--proxy-allow', '127.0.0.1']);
    const ok = await via(e.proxy, `http://127.0.0.1:${origin.port}/hello`);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ url: '/hello' });
    expect((await via(e.proxy, `http://127.0.0.1:${origin.port}/abs`, false)).status).toBe(200);
    // 127.0.0.1 (every port) is allowed, yet the edge's metrics, public HTTP and proxy ports are not.
    for (const port of [e.metricsPort, e.httpPort, Number(e.proxy.split(':')[2])]) {
      for (const connect of [true, false]) {
        const r = await via(e.proxy, `http://127.0.0.1:${port}/metrics`, connect);
        expect(r.status, `port ${port}`).toBe(403);
        expect(r.body).not.toContain('oxy_edge');
      }
    }
    // 127.0.0.2 is in 127.0.0.0/8 but only on the origin's port.
    expect((await via(e.proxy, `http://127.0.0.2:${origin.port + 1}/`)).status).toBe(403);
    const logged = await e.edge.waitFor(
      new RegExp(
        `INF CONNECT .*client=127\\.0\\.0\\.1:\\d+ destination=127\\.0\\.0\\.1:${origin.port} upstream=127\\.0\\.0\\.1:${origin.port} via=direct bytesIn=(\\d+) bytesOut=(\\d+) durationMs=\\d+ proxyStatus=`,
      ),
    );
    // The tunnel's bytes are counted though the kernel relayed them (native/splice.ts): the
    // client's request in, the origin's whole response out.
    expect(Number(logged[1])).toBeGreaterThan('GET /hello HTTP/1.1\r\n'.length);
    expect(Number(logged[2])).toBeGreaterThan(ok.body.length);
  });

  it('edge.yml proxy-allow; a bad entry is refused at start with what to write', async () => {
    const yml = join(home.home, 'edge.yml');
    writeFileSync(yml, `proxy-allow:\n  - 127.0.0.1:${origin.port}\n`);
    const e = await proxyEdge(['--config', yml]);
    expect((await via(e.proxy, `http://127.0.0.1:${origin.port}/`)).status).toBe(200);
    const bad = await oxy(home.home, [...LOOPBACK_EDGE, '--proxy-listen', '127.0.0.1:0', '--proxy-allow', '10.0.0.0/33']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('Invalid --proxy-allow entry "10.0.0.0/33"');
    expect(bad.stderr).toContain('CIDR:PORTS');
  });
});
