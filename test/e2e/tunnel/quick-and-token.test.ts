import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { oxy, oxyOk, tempHome } from '../../helpers/cli.js';
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

  it('the connector on its own thread (the default) or on the main one (OXY_QUICK_WORKER=0): requests, config, logs and a clean stop', async () => {
    const home = homes[0].home;
    const logfile = join(home, 'quick.log');
    // The config file reaches the connector's thread (parsed again there).
    writeFileSync(join(home, 'config.yml'), `logfile: ${logfile}\nhello-world: true\nwarp-routing:\n  enabled: false\n`);
    for (const worker of ['1', '0']) {
      const quick = new OxyProcess(home, ['tunnel', '--protocol', 'http2'], { OXY_QUICK_WORKER: worker });
      procs.push(quick);
      const [, url] = await quick.waitFor(/^(http:\/\/127\.0\.0\.1:\d+)$/m);
      expect((await run('curl', ['-sS', `${url}/`])).stdout).toContain('Congrats! You created a tunnel!');
      // The connector's log lines come through the process's logger, to stderr and the log file.
      expect(quick.output).toMatch(/Registered tunnel connection tunnelID=/);
      expect(readFileSync(logfile, 'utf8')).toMatch(/Starting metrics server/);
      quick.child.kill('SIGINT');
      expect(await quick.exited()).toBe(0);
      expect(quick.output).toMatch(/Unregistered tunnel connection/);
    }
  });

  it("reads config.yml as cloudflared's quick tunnel does: protocol, metrics, loglevel, logfile take effect", async () => {
    const home = homes[0].home;
    const metricsPort = await freePort();
    const logfile = join(home, 'quick.log');
    writeFileSync(
      join(home, 'config.yml'),
      `tunnel: someone-elses\nprotocol: quic\nmetrics: 127.0.0.1:${metricsPort}\nloglevel: warn\nlogfile: ${logfile}\nha-connections: 1\nhello-world: true\n`,
    );
    const quick = new OxyProcess(home, ['tunnel']);
    procs.push(quick);
    const [, url] = await quick.waitFor(/^(http:\/\/127\.0\.0\.1:\d+)$/m);
    expect((await run('curl', ['-sS', `${url}/`])).stdout).toContain('Congrats!');
    // The metrics port the file names is bound, and its /metrics counts QUIC connections only.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^oxyctl_tunnel_connection_events\{protocol="quic",event="registered"\} 1$/m);
    expect(metrics).not.toMatch(/protocol="http2",event="registered"/);
    // loglevel: warn hides the info lines; the log file gets what the terminal gets.
    expect(quick.output).not.toMatch(/Registered tunnel connection/);
    expect(quick.output).toContain('tunnel has no effect on a quick tunnel');
    expect(readFileSync(logfile, 'utf8')).not.toMatch(/Registered tunnel connection/);
    quick.child.kill('SIGINT');
    expect(await quick.exited()).toBe(0);
    // As cloudflared's: without --url or --hello-world there is no quick tunnel; a file naming a tunnel points to tunnel run.
    writeFileSync(join(home, 'config.yml'), 'tunnel: someone-elses\nprotocol: quic\n');
    const bare = await oxy(home, ['tunnel']);
    expect(bare.code).not.toBe(0);
    expect(bare.stderr).toContain("Use 'oxyctl tunnel run' to start tunnel someone-elses");
    writeFileSync(join(home, 'config.yml'), `hello-world: true\nlogfile: ${logfile}\n`);
    writeFileSync(join(home, 'empty.yml'), 'protocol: quic\n');
    const none = await oxy(home, ['tunnel', '--config', join(home, 'empty.yml')]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('To run a quick tunnel pass --url');
    // The command line wins over the file.
    const second = new OxyProcess(home, ['tunnel', '-p', 'http2', '--loglevel', 'info', '--metrics', '127.0.0.1:0']);
    procs.push(second);
    await second.waitFor(/Registered tunnel connection connIndex=0 .*protocol=http2/);
    await vi.waitFor(() => expect(readFileSync(logfile, 'utf8')).toMatch(/Registered tunnel connection connIndex=0 .*protocol=http2/), { timeout: 5000 });
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
    const c = new OxyProcess(otherHost, [
      'tunnel',
      'run',
      '--protocol',
      'http2',
      '--hello-world',
      '--token',
      Buffer.from(JSON.stringify(token)).toString('base64'),
    ]);
    procs.push(c);
    expect(await c.exited()).not.toBe(0);
    expect(c.output).toMatch(/pin/i);
  });
});
