import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool, request } from 'undici';
import { spawnUntil } from './lib/run.js';
const bin = new URL('../bin/run.js', import.meta.url).pathname;
const home = mkdtempSync(join(tmpdir(), 'oxy-prof-'));
const env = { ...process.env, OXY_HOME: home, NO_COLOR: '1' };
const oxy = (...a) => execFileSync(process.execPath, [bin, ...a], { env });
oxy('edge', 'init');
oxy('tunnel', 'create', 'bench');
oxy('tunnel', 'route', 'dns', 'bench', 'b.example.com');
const origin = await spawnUntil(process.execPath, [new URL('./lib/servers.js', import.meta.url).pathname, 'http'], /ready (\d+)/);
const edge = async (loc) => {
  const e = await spawnUntil(
    process.execPath,
    [bin, 'edge', 'run', '--tunnel-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--no-quic', '--location', loc],
    /Public HTTP listener ready address=127\.0\.0\.1:(\d+)/,
    { env },
  );
  return { child: e.child, url: `http://127.0.0.1:${e.match[1]}`, port: /Tunnel listener ready protocol=http2 address=127\.0\.0\.1:(\d+)/.exec(e.output())[1] };
};
const a = await edge('edge-a');
const b = await edge('edge-b');
const c = await spawnUntil(
  process.execPath,
  [bin, 'tunnel', 'run', '--edge', `127.0.0.1:${a.port}`, '--protocol', 'http2', '--url', `http://127.0.0.1:${origin.match[1]}`, 'bench'],
  /(Registered tunnel connection[^\n]*\n[\s\S]*){4}/,
  { env },
);
for (;;) {
  const r = await request(`${b.url}/small`, { headers: { host: 'b.example.com' } });
  await r.body.dump();
  if (r.statusCode === 200) break;
  await new Promise((r) => setTimeout(r, 100));
}
for (const [name, url] of [
  ['direct', a.url],
  ['fwd', b.url],
  ['direct', a.url],
  ['fwd', b.url],
]) {
  const pool = new Pool(url, { connections: 1 });
  const t = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    const r = await pool.request({ path: '/small', method: 'GET', headers: { host: 'b.example.com' } });
    await r.body.dump();
    t.push(performance.now() - t0);
  }
  t.sort((x, y) => x - y);
  console.log(name, 'median', t[100].toFixed(2), 'p90', t[180].toFixed(2), 'max', t[199].toFixed(2));
  await pool.close();
}
for (const p of [a.child, b.child, c.child, origin.child]) p.kill('SIGKILL');
