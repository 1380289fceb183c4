// An absolute-form request target names its host itself (RFC 9112 §3.2.2: Host is then
// ignored). The public listener used to route by Host and pass the URL on, so
// `GET http://other.example.com/x` with `Host: app.example.com` went through app's tunnel
// (and app's hooks) to an origin that reads the URL: another virtual host behind the same
// origin was reachable under the wrong name. Now the URL's host routes, the origin gets an
// origin-form path and a Host that match, and a target that is neither a path nor an http(s)
// URL is refused with 400. With and without hooks (the hooked path builds its head apart).
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startConnector, startEdge } from '../../helpers/processes.js';
import { probe } from './support.js';

let home: { home: string; cleanup: () => void };
const procs: OxyProcess[] = [];
const seen: { url: string; host: IncomingHttpHeaders['host'] }[] = [];
const origin = createServer((req, res) => {
  seen.push({ url: req.url ?? '', host: req.headers.host });
  req.resume();
  res.end('origin');
});
const ports: Record<string, number> = {};

beforeAll(async () => {
  home = tempHome();
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  await oxyOk(home.home, ['tunnel', 'create', 'web']);
  await oxyOk(home.home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
  const hooks = join(home.home, 'hooks.js');
  writeFileSync(hooks, `export function start() { return { http: { handleRequest() {} } }; }\n`);
  for (const [name, extra] of [
    ['plain', []],
    ['hooked', ['--hooks', hooks]],
  ] as const) {
    const e = await startEdge(home.home, [...extra, '--location', name]);
    procs.push(e.edge);
    procs.push((await startConnector(home.home, e.tunnelPort, ['--url', url, '--ha-connections', '1', 'web'], 1)).connector);
    ports[name] = e.httpPort;
  }
});

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  origin.close();
  home?.cleanup();
});

// Connection: close: each probe resolves when the edge has answered and closed.
const statusOf = (reply: Buffer) => Number(/^HTTP\/1\.1 (\d{3})/.exec(reply.toString('latin1'))?.[1] ?? 0);

describe.each(['plain', 'hooked'])('an absolute-form target on the %s public listener', (name) => {
  it('routes by the URL, not by Host; the origin sees the path and a Host that match', async () => {
    seen.length = 0;
    const other = await probe(ports[name], ['GET http://other.example.com/secret HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n'], {
      holdMs: 10_000,
    });
    expect(statusOf(other), other.toString()).toBe(404);
    expect(other.toString()).toContain('other.example.com');
    const app = await probe(ports[name], ['GET http://app.example.com/abs?q=1 HTTP/1.1\r\nHost: ignored.example.com\r\nConnection: close\r\n\r\n'], {
      holdMs: 10_000,
    });
    expect(statusOf(app), app.toString()).toBe(200);
    expect(seen).toEqual([{ url: '/abs?q=1', host: 'app.example.com' }]);
  });

  it('refuses a target that is neither a path nor an http(s) URL', async () => {
    seen.length = 0;
    const reply = await probe(ports[name], ['GET ftp://app.example.com/x HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n'], { holdMs: 10_000 });
    expect(statusOf(reply), reply.toString()).toBe(400);
    expect(seen).toEqual([]);
  });
});
