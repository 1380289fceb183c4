/**
 * The dashboard's JSON API against a real edge process: who may call it (401, CSRF), the
 * same use-cases and error texts as the CLI (1014 and friends), tunnel status as connectors
 * come and go, live traffic counted while curl sends requests, and the listener's refusal
 * of a non-loopback bind without TLS.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { oxy, oxyJson, oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startConnector, LOOPBACK_EDGE } from '../../helpers/processes.js';
import { api, login, newToken, startDashboardEdge, until, type DashboardEdge } from './support.js';

const curl = promisify(execFile);

describe('dashboard API', () => {
  let home: string;
  let cleanup: () => void;
  let d: DashboardEdge;
  let token: string;
  const procs: OxyProcess[] = [];

  beforeAll(async () => {
    ({ home, cleanup } = tempHome());
    token = await newToken(home);
    await oxyOk(home, ['tunnel', 'create', 'web']);
    await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
    d = await startDashboardEdge(home);
    procs.push(d.edge);
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    cleanup();
  });

  it('refuses calls and the event stream without the token (401), and a wrong token', async () => {
    for (const path of ['/api/v1/tunnels', '/api/v1/routes', '/api/v1/devices', '/api/v1/traffic', '/api/v1/events']) {
      const r = await api(d.base, 'GET', path);
      expect(r.status, path).toBe(401);
      expect(r.body.error.code).toBe('OXY_ERR_DASHBOARD_UNAUTHORIZED');
    }
    expect((await api(d.base, 'GET', '/api/v1/tunnels', { bearer: 'oxyd_wrong' })).status).toBe(401);
    expect((await api(d.base, 'GET', '/api/v1/tunnels', { cookie: `oxy_dashboard_${new URL(d.base).port}=forged` })).status).toBe(401);
    const bad = await api(d.base, 'POST', '/api/v1/login', { body: { token: 'oxyd_wrong' } });
    expect(bad.status).toBe(401);
    expect(bad.body.error.message).toContain('oxyctl edge dashboard-token');
    // A write without the token changes nothing.
    expect((await api(d.base, 'POST', '/api/v1/vnets', { body: { name: 'sneaky' } })).status).toBe(401);
    expect(await oxyOk(home, ['vnet', 'list'])).not.toContain('sneaky');
  });

  it('a session cookie works for reads; its writes need the CSRF token and the same origin (403 otherwise)', async () => {
    const s = await login(d.base, token);
    expect((await api(d.base, 'GET', '/api/v1/tunnels', { cookie: s.cookie })).status).toBe(200);
    const noCsrf = await api(d.base, 'POST', '/api/v1/vnets', { cookie: s.cookie, body: { name: 'csrf-less' } });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.body.error.code).toBe('OXY_ERR_DASHBOARD_CSRF');
    const wrong = await api(d.base, 'POST', '/api/v1/vnets', { cookie: s.cookie, csrf: 'x'.repeat(s.csrf.length), body: { name: 'csrf-less' } });
    expect(wrong.status).toBe(403);
    const crossSite = await api(d.base, 'POST', '/api/v1/vnets', {
      cookie: s.cookie,
      csrf: s.csrf,
      body: { name: 'csrf-less' },
      headers: { origin: 'http://evil.example' },
    });
    expect(crossSite.status).toBe(403);
    // A form post (not JSON) cannot even log in.
    const form = await request(`${d.base}/api/v1/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${token}`,
    });
    expect(form.statusCode).toBe(415);
    await form.body.dump();
    expect(await oxyOk(home, ['vnet', 'list'])).not.toContain('csrf-less');
    const good = await api(d.base, 'POST', '/api/v1/vnets', { cookie: s.cookie, csrf: s.csrf, body: { name: 'from-browser' } });
    expect(good.status).toBe(201);
    expect(await oxyOk(home, ['vnet', 'list'])).toContain('from-browser');
    // Logging out ends the session.
    expect((await api(d.base, 'DELETE', '/api/v1/session', { cookie: s.cookie, csrf: s.csrf })).status).toBe(204);
    expect((await api(d.base, 'GET', '/api/v1/tunnels', { cookie: s.cookie })).status).toBe(401);
  });

  it('routes and vnets go through the CLI use-cases: the same rows, the same 1014 text', async () => {
    const add = await api(d.base, 'POST', '/api/v1/routes', { bearer: token, body: { network: '10.77.0.0/16', tunnel: 'web', comment: 'from the API' } });
    expect(add.status).toBe(201);
    expect(add.body).toMatchObject({ network: '10.77.0.0/16', tunnel_name: 'web', comment: 'from the API' });
    const shown = await oxyJson<{ id: string; network: string }[]>(home, ['tunnel', 'route', 'ip', 'show']);
    expect(shown.map((r) => r.id)).toContain(add.body.id);
    const again = await api(d.base, 'POST', '/api/v1/routes', { bearer: token, body: { network: '10.77.0.0/16', tunnel: 'web' } });
    const cli = await oxy(home, ['tunnel', 'route', 'ip', 'add', '10.77.0.0/16', 'web']);
    expect(again.status).toBe(409);
    expect(again.body.error).toEqual({ code: 'OXY_ERR_ROUTE_EXISTS', message: cli.stderr.trim(), api_code: 1014 });
    expect(again.body.error.message).toContain('code: 1014');
    const hostBits = await api(d.base, 'POST', '/api/v1/routes', { bearer: token, body: { network: '10.77.1.1/16', tunnel: 'web' } });
    expect(hostBits.status).toBe(400);
    expect(hostBits.body.error.message).toBe((await oxy(home, ['tunnel', 'route', 'ip', 'add', '10.77.1.1/16', 'web'])).stderr.trim());
    // Filters and the lookup box.
    const filtered = await api(d.base, 'GET', '/api/v1/routes?subset_of=10.0.0.0/8&tunnel=web', { bearer: token });
    expect(filtered.body.routes.map((r: { network: string }) => r.network)).toEqual(['10.77.0.0/16']);
    const lookup = await api(d.base, 'GET', '/api/v1/route-lookup?ip=10.77.3.4', { bearer: token });
    expect(lookup.body.route.id).toBe(add.body.id);
    expect((await api(d.base, 'GET', '/api/v1/route-lookup?ip=nope', { bearer: token })).body.error.code).toBe('OXY_ERR_INVALID_IP');
    // Delete by CIDR (URL-encoded), then it is gone for the CLI too.
    const del = await api(d.base, 'DELETE', `/api/v1/routes/${encodeURIComponent('10.77.0.0/16')}`, { bearer: token });
    expect(del.status).toBe(200);
    expect(del.body.deleted_at).not.toBeNull();
    expect(await oxyOk(home, ['tunnel', 'route', 'ip', 'show'])).not.toContain('10.77.0.0/16');
    // Vnets: the default cannot go, with the CLI's words.
    const vnets = await api(d.base, 'GET', '/api/v1/vnets', { bearer: token });
    const def = vnets.body.vnets.find((v: { is_default_network: boolean }) => v.is_default_network);
    const refused = await api(d.base, 'DELETE', `/api/v1/vnets/${def.name}`, { bearer: token });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toBe((await oxy(home, ['vnet', 'delete', '--yes', def.name])).stderr.trim());
    expect((await api(d.base, 'POST', '/api/v1/vnets', { bearer: token, body: { name: 'spare' } })).status).toBe(201);
    const gone = await api(d.base, 'DELETE', '/api/v1/vnets/spare', { bearer: token });
    expect(gone.status).toBe(200);
    expect(gone.body).toMatchObject({ vnet: { name: 'spare' }, deleted_routes: 0 });
    expect(await oxyOk(home, ['vnet', 'list'])).not.toContain('spare');
    expect((await api(d.base, 'GET', '/api/v1/nothing', { bearer: token })).status).toBe(404);
  });

  it('a tunnel goes from down to healthy when its connector registers, with its connections and hostnames', async () => {
    const status = async () => (await api(d.base, 'GET', '/api/v1/tunnels', { bearer: token })).body.tunnels.find((t: { name: string }) => t.name === 'web');
    expect((await status()).status).toBe('down');
    const c = await startConnector(home, d.tunnelPort, ['--hello-world', '--ha-connections', '2', 'web'], 2);
    procs.push(c.connector);
    // The edge records each HA connection in the store as it registers: wait for both.
    const web = await until(async () => {
      const s = await status();
      return s.status === 'healthy' && s.connections.length === 2 ? s : undefined;
    }, 'web healthy with both connections');
    expect(web.hostnames).toEqual(['app.example.com']);
    expect(web.connections[0]).toMatchObject({ edge: 'local', protocol: 'http2', origin_ip: '127.0.0.1' });
    expect(web.connections[0].client_version).toMatch(/\d+\.\d+/);
    expect(web.connections[0].uptime_seconds).toBeGreaterThanOrEqual(0);
  });

  it('counts requests per tunnel and hostname while curl sends traffic, and errors by Proxy-Status', async () => {
    const requests = async () => (await api(d.base, 'GET', '/api/v1/traffic', { bearer: token })).body;
    const before = (await requests()).tunnels.find((t: { name: string }) => t.name === 'web')?.requests_total ?? 0;
    for (let i = 0; i < 5; i++) await curl('curl', ['-sS', '-H', 'Host: app.example.com', `http://127.0.0.1:${d.httpPort}/`]);
    const missing = await curl('curl', ['-sS', '-D', '-', '-o', '/dev/null', '-H', 'Host: nobody.example.com', `http://127.0.0.1:${d.httpPort}/`]);
    expect(missing.stdout).toMatch(/proxy-status: oxyctl; error=destination_not_found/i);
    const t = await requests();
    const web = t.tunnels.find((x: { name: string }) => x.name === 'web');
    expect(web.requests_total - before).toBe(5);
    const host = t.hostnames.find((h: { hostname: string }) => h.hostname === 'app.example.com');
    expect(host.tunnel_id).toBe(web.id);
    expect(t.errors).toContainEqual(expect.objectContaining({ proxy_status: 'destination_not_found', total: 1 }));
  });

  it('streams updates over Server-Sent Events and ends a session when the token is replaced', async () => {
    const s = await login(d.base, token);
    const res = await request(`${d.base}/api/v1/events`, { headers: { cookie: s.cookie } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    let text = '';
    const ended = (async () => {
      for await (const chunk of res.body) text += chunk.toString();
    })();
    // A script's stream, with the token itself, ends with it too.
    const scripted = await request(`${d.base}/api/v1/events`, { headers: { authorization: `Bearer ${token}` } });
    expect(scripted.statusCode).toBe(200);
    const scriptedEnded = scripted.body.dump({ limit: Infinity });
    await until(async () => text.includes('event: update'), 'a first update');
    const update = JSON.parse(/event: update\ndata: (.*)\n/.exec(text)![1]);
    expect(update.tunnels.map((t: { name: string }) => t.name)).toContain('web');
    expect(update.traffic).toHaveProperty('hostnames');
    // A new token: the old one and its sessions stop working, the stream ends.
    const next = await newToken(home);
    await ended;
    await scriptedEnded;
    expect((await api(d.base, 'GET', '/api/v1/tunnels', { cookie: s.cookie })).status).toBe(401);
    expect((await api(d.base, 'GET', '/api/v1/tunnels', { bearer: token })).status).toBe(401);
    expect((await api(d.base, 'GET', '/api/v1/tunnels', { bearer: next })).status).toBe(200);
    token = next;
  });

  it('serves the built single page with caching headers: index revalidated, hashed assets immutable, nothing from elsewhere', async () => {
    const index = await request(`${d.base}/`);
    const html = await index.body.text();
    expect(index.statusCode).toBe(200);
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(index.headers['cache-control']).toBe('no-cache');
    expect(index.headers['content-security-policy']).toContain("default-src 'self'");
    expect(html).not.toMatch(/https?:\/\//);
    const again = await request(`${d.base}/`, { headers: { 'if-none-match': String(index.headers.etag) } });
    expect(again.statusCode).toBe(304);
    await again.body.dump();
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1];
    const asset = await request(`${d.base}${script}`);
    expect(asset.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(asset.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    const plain = await asset.body.text();
    expect(plain.length).toBeGreaterThan(1000);
    const zipped = await request(`${d.base}${script}`, { headers: { 'accept-encoding': 'gzip' } });
    expect(zipped.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(Buffer.from(await zipped.body.arrayBuffer())).toString()).toBe(plain);
    // A view's own path is the same page; a missing asset is a 404.
    const view = await request(`${d.base}/routes`);
    expect(await view.body.text()).toBe(html);
    const missing = await request(`${d.base}/assets/nothing.js`);
    expect(missing.statusCode).toBe(404);
    await missing.body.dump();
  });

  it('lists enrolled devices and revokes one through the same use-case as warp revoke', async () => {
    await oxyOk(home, ['warp', 'enroll', 'laptop']);
    await oxyOk(home, ['vnet', 'add', 'guests']);
    await oxyOk(home, ['warp', 'enroll', '--vnet', 'guests', 'kiosk']);
    const list = await api(d.base, 'GET', '/api/v1/devices', { bearer: token });
    expect(list.body.devices).toEqual([
      expect.objectContaining({ name: 'laptop', connected: false, vnet_id: null, allowed_vnets: [] }),
      expect.objectContaining({ name: 'kiosk', allowed_vnets: ['guests'] }),
    ]);
    expect((await api(d.base, 'POST', '/api/v1/devices/laptop/revoke', { bearer: token })).status).toBe(200);
    expect(await oxyOk(home, ['warp', 'devices'])).not.toContain('laptop');
    const again = await api(d.base, 'POST', '/api/v1/devices/laptop/revoke', { bearer: token });
    expect(again.status).toBe(404);
    expect(again.body.error.message).toBe((await oxy(home, ['warp', 'revoke', '--yes', 'laptop'])).stderr.trim());
  });
});

describe('dashboard listener', () => {
  it('refuses a non-loopback bind without --dashboard-tls or --dashboard-insecure, and serves HTTPS with --dashboard-tls', async () => {
    const { home, cleanup } = tempHome();
    try {
      const r = await oxy(home, [...LOOPBACK_EDGE, '--no-quic', '--dashboard-listen', '0.0.0.0:0']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('--dashboard-tls');
      expect(r.stderr).toContain('--dashboard-insecure');
      const tls = new OxyProcess(home, [...LOOPBACK_EDGE, '--no-quic', '--dashboard-listen', '0.0.0.0:0', '--dashboard-tls']);
      try {
        const m = await tls.waitFor(/Dashboard ready .*url=https:\/\/0\.0\.0\.0:(\d+)\//);
        const out = await curl('curl', ['-sS', '-k', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${m[1]}/api/v1/tunnels`]);
        expect(out.stdout).toBe('401');
      } finally {
        await tls.stop();
      }
    } finally {
      cleanup();
    }
  });

  it('says so when its address is taken', async () => {
    const { home, cleanup } = tempHome();
    const taken = createServer().listen(0, '127.0.0.1');
    try {
      await once(taken, 'listening');
      const listen = `127.0.0.1:${(taken.address() as { port: number }).port}`;
      const r = await oxy(home, [...LOOPBACK_EDGE, '--no-quic', '--dashboard-listen', listen]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`The dashboard cannot listen on ${listen}: the address is in use. Choose another --dashboard-listen.`);
    } finally {
      taken.close();
      cleanup();
    }
  });

  it('is off by default and on with dashboard-listen in edge.yml', async () => {
    const { home, cleanup } = tempHome();
    const file = join(home, 'edge.yml');
    writeFileSync(file, 'dashboard-listen: 127.0.0.1:0\n');
    const base = ['edge', 'run', '--tunnel-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--no-quic'];
    const plain = new OxyProcess(home, base);
    const configured = new OxyProcess(home, [...base, '--config', file]);
    try {
      await plain.waitFor(/Edge running/);
      expect(plain.output).not.toContain('Dashboard');
      const m = await configured.waitFor(/Dashboard ready .*url=http:\/\/127\.0\.0\.1:(\d+)\//);
      expect((await api(`http://127.0.0.1:${m[1]}`, 'GET', '/api/v1/tunnels')).status).toBe(401);
    } finally {
      await Promise.all([plain.stop(), configured.stop()]);
      cleanup();
    }
  });
});
