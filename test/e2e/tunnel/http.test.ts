import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool, request } from 'undici';
import WebSocket from 'ws';
import { oxyJson, oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, PROTOCOLS, startConnector, startEdge } from '../../helpers/processes.js';
import { startEventsOrigin, type Running } from '../../helpers/origins.js';

const curl = promisify(execFile);
describe.each(PROTOCOLS)('over %s', (protocol) => {
  let home: string;
  let cleanup: () => void;
  const procs: OxyProcess[] = [];
  let httpPort: number;
  let metricsPort: number;
  let events: Running<unknown>;

  beforeAll(async () => {
    ({ home, cleanup } = tempHome());
    events = await startEventsOrigin(4, 100);
    await oxyOk(home, ['tunnel', 'create', 'web']);
    await oxyOk(home, ['tunnel', 'create', 'other']);
    await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
    await oxyOk(home, ['tunnel', 'route', 'dns', 'web', '*.wild.example.com']);
    await oxyOk(home, ['tunnel', 'route', 'dns', 'other', 'exact.wild.example.com']);
    const config = join(home, 'web.yml');
    writeFileSync(
      config,
      `ingress:
    - hostname: app.example.com
      path: ^/events
      service: http://127.0.0.1:${events.port}
    - hostname: "*.wild.example.com"
      service: http_status:404
    - service: hello_world
  `,
    );
    const e = await startEdge(home);
    procs.push(e.edge);
    httpPort = e.httpPort;
    const web = await startConnector(home, e.tunnelPort, ['--config', config, 'web'], 4, protocol);
    procs.push(web.connector);
    metricsPort = web.metricsPort;
    const other = await startConnector(home, e.tunnelPort, ['--url', `http://127.0.0.1:${events.port}`, '--ha-connections', '1', 'other'], 1, protocol);
    procs.push(other.connector);
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await events.close();
    cleanup();
  });

  const get = (path: string, init: Parameters<typeof request>[1] = {}, host = 'app.example.com') =>
    request(`http://127.0.0.1:${httpPort}${path}`, { ...init, headers: { host, ...(init.headers as object) } });

  describe('HTTP through the tunnel', () => {
    it('curl GET reaches the hello-world origin', async () => {
      const { stdout } = await curl('curl', ['-sS', '-H', 'Host: app.example.com', `http://127.0.0.1:${httpPort}/hello?x=1`]);
      expect(stdout).toContain('Congrats! You created a tunnel!');
      expect(stdout).toContain('GET /hello?x=1');
      expect(stdout.toLowerCase()).toContain('x-forwarded-for: 127.0.0.1');
    });

    it('POST with a body, small and 20 MB, comes back intact', async () => {
      const { stdout } = await curl('curl', ['-sS', '-H', 'Host: app.example.com', '--data-binary', 'hello body', `http://127.0.0.1:${httpPort}/echo`]);
      expect(stdout).toBe('hello body');
      const big = randomBytes(20 * 1024 * 1024);
      const hash = createHash('sha256');
      try {
        const res = await get('/echo', { method: 'POST', body: big });
        for await (const chunk of res.body) hash.update(chunk);
      } catch (err) {
        // Seen once at load 15-19 over http2 (read ECONNRESET after 10 s, not reproduced): say
        // what the edge and the connector logged, for the next time.
        throw new Error(`${(err as Error).message}; the processes logged:\n${procs.map((p) => p.output.slice(-3000)).join('\n---\n')}`);
      }
      expect(hash.digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
    });

    it('streams server-sent events as they are produced', async () => {
      const res = await get('/events');
      expect(res.headers['content-type']).toBe('text/event-stream');
      const arrivals: number[] = [];
      let text = '';
      for await (const chunk of res.body) {
        arrivals.push(Date.now());
        text += chunk;
      }
      expect(text).toBe([0, 1, 2, 3].map((n) => `data: event ${n}\n\n`).join(''));
      // Events arrive spread over time (not buffered into one chunk at the end).
      expect(arrivals.length).toBeGreaterThanOrEqual(3);
      expect(arrivals.at(-1)! - arrivals[0]).toBeGreaterThanOrEqual(150);
    });

    // A hang detector, not a speed limit: 150 connections at once at load 18 passed 10 s.
    it('holds 150 long-lived streams at once (origin connections are not capped at keepAliveConnections)', async () => {
      const pool = new Pool(`http://127.0.0.1:${httpPort}`, { connections: 150 });
      const open = await Promise.all(
        Array.from({ length: 150 }, () => pool.request({ path: '/sse', method: 'GET', headers: { host: 'app.example.com' }, headersTimeout: 60_000 })),
      );
      // The statuses that are not 200, with how many of each (not just "false").
      const statuses = open.map((r) => r.statusCode).filter((s) => s !== 200);
      expect(statuses, `${statuses.length} of 150 not 200`).toEqual([]);
      for (const r of open) r.body.on('error', () => undefined).destroy();
      await pool.destroy();
    });

    it('carries WebSocket upgrades both ways', async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${httpPort}/ws`, { headers: { host: 'app.example.com' } });
      await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
      const echoes: string[] = [];
      const done = new Promise<void>((resolve) =>
        ws.on('message', (d) => {
          echoes.push(d.toString());
          if (echoes.length === 3) resolve();
        }),
      );
      for (const m of ['one', 'two', 'x'.repeat(100_000)]) ws.send(m);
      await done;
      expect(echoes.map((e) => e.length)).toEqual([3, 3, 100_000]);
      ws.close();
    });

    it('routes hostnames: exact before wildcard, per tunnel; http_status services answer themselves', async () => {
      const wild = await get('/x', {}, 'a.wild.example.com');
      expect(wild.statusCode).toBe(404); // web's ingress: http_status:404
      await wild.body.dump();
      const exact = await get('/events', {}, 'exact.wild.example.com'); // tunnel "other"
      expect(exact.statusCode).toBe(200);
      expect(await exact.body.text()).toContain('data: event 3');
      const unknown = await get('/', {}, 'nobody.example.org');
      expect(unknown.statusCode).toBe(404);
      expect(await unknown.body.text()).toContain('No tunnel serves the hostname nobody.example.org');
    });

    it('tunnel list and info show the live connections; /ready and /metrics answer', async () => {
      const [web] = await oxyJson<{ connections: { colo_name: string; protocol: string }[] }[]>(home, ['tunnel', 'list', '--name', 'web']);
      expect(web.connections).toHaveLength(4);
      expect(web.connections.filter((c) => c.colo_name !== 'local' || c.protocol !== protocol)).toEqual([]);
      const ready = await request(`http://127.0.0.1:${metricsPort}/ready`);
      expect(ready.statusCode).toBe(200);
      expect(await ready.body.json()).toMatchObject({ status: 200, readyConnections: 4, connectorId: expect.any(String) });
      const metrics = await request(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(await metrics.body.text()).toContain('oxy_connector_process_cpu');
    });
  });
});
