import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startEdge, freePort } from '../../helpers/processes.js';

const run = promisify(execFile);
let homes: { home: string; cleanup: () => void }[];
let procs: OxyProcess[];
beforeEach(() => {
  homes = [tempHome(), tempHome()];
  procs = [];
});
afterEach(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  for (const h of homes) h.cleanup();
});

describe('quick tunnel', () => {
  it('oxyctl tunnel --hello-world prints a URL that reaches the hello-world origin, and cleans up', async () => {
    const quick = new OxyProcess(homes[0].home, ['tunnel', '--hello-world', '--protocol', 'http2']);
    procs.push(quick);
    const [, url] = await quick.waitFor(/^(http:\/\/127\.0\.0\.1:\d+)$/m);
    const { stdout } = await run('curl', ['-sS', `${url}/`]);
    expect(stdout).toContain('Congrats! You created a tunnel!');
    expect(quick.output).toContain('Your quick Tunnel has been created!');
    quick.child.kill('SIGINT');
    expect(await quick.exited()).toBe(0);
  });
});

describe('tunnel token on another host', () => {
  it('carries the edge address and CA pin: a connector with an empty data directory connects', async () => {
    const [edgeHost, otherHost] = homes.map((h) => h.home);
    const port = await freePort();
    await oxyOk(edgeHost, ['edge', 'init', '--advertise', `127.0.0.1:${port}`]);
    await oxyOk(edgeHost, ['tunnel', 'create', 'web']);
    await oxyOk(edgeHost, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
    const e = await startEdge(edgeHost, [], { tunnel: port });
    procs.push(e.edge);
    const token = (await oxyOk(edgeHost, ['tunnel', 'token', 'web'])).trim();
    const c = new OxyProcess(otherHost, ['tunnel', 'run', '--protocol', 'http2', '--hello-world', '--token', token]);
    procs.push(c);
    await c.waitFor(/Registered tunnel connection connIndex=0 /);
    const { stdout } = await run('curl', ['-sS', '-H', 'Host: app.example.com', `http://127.0.0.1:${e.httpPort}/`]);
    expect(stdout).toContain('Congrats!');
  });

  it('a pin that does not match the edge is refused', async () => {
    const [edgeHost, otherHost] = homes.map((h) => h.home);
    const port = await freePort();
    await oxyOk(edgeHost, ['edge', 'init', '--advertise', `127.0.0.1:${port}`]);
    await oxyOk(edgeHost, ['tunnel', 'create', 'web']);
    const e = await startEdge(edgeHost, [], { tunnel: port });
    procs.push(e.edge);
    const token = JSON.parse(Buffer.from((await oxyOk(edgeHost, ['tunnel', 'token', 'web'])).trim(), 'base64').toString());
    token.p = Buffer.alloc(32, 9).toString('base64');
    const c = new OxyProcess(otherHost, ['tunnel', 'run', '--protocol', 'http2', '--hello-world', '--token', Buffer.from(JSON.stringify(token)).toString('base64')]);
    procs.push(c);
    expect(await c.exited()).not.toBe(0);
    expect(c.output).toMatch(/pin/i);
  });
});
