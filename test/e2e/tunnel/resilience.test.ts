import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { oxyOk } from '../../helpers/cli.js';
import { withEnv } from '../../helpers/env.js';
import { OxyProcess, useWebTunnel, PROTOCOLS, startConnector, startEdge, freePort } from '../../helpers/processes.js';
import { startEventsOrigin } from '../../helpers/origins.js';

const t = useWebTunnel();

const hello = (httpPort: number) =>
  request(`http://127.0.0.1:${httpPort}/`, { headers: { host: 'app.example.com' } }).then(async (r) => ({ status: r.statusCode, text: await r.body.text() }));

/** The local ports of the connector's TCP connections to the edge. */
function connectorPorts(edgePort: number): number[] {
  const out = execFileSync('ss', ['-Htn', 'state', 'established', 'dst', `127.0.0.1:${edgePort}`], { encoding: 'utf8' });
  return out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => Number(line.trim().split(/\s+/)[2].split(':').pop()));
}

describe.each(PROTOCOLS)('tunnel resilience over %s', (protocol) => {
  it('refuses a wrong secret with a clear error on both sides', async () => {
    const e = await startEdge(t.home);
    t.procs.push(e.edge);
    const [, id] = /"t":"([^"]+)"/.exec(Buffer.from((await oxyOk(t.home, ['tunnel', 'token', 'web'])).trim(), 'base64').toString())!;
    const forged = Buffer.from(JSON.stringify({ a: 'x', s: Buffer.alloc(32, 1).toString('base64'), t: id })).toString('base64');
    const c = new OxyProcess(t.home, ['tunnel', 'run', '--edge', `127.0.0.1:${e.tunnelPort}`, '--protocol', protocol, '--token', forged, '--hello-world']);
    t.procs.push(c);
    expect(await c.exited()).not.toBe(0);
    expect(c.output).toContain('Unauthorized: Invalid tunnel secret');
    await e.edge.waitFor(/Refused tunnel connection .*Unauthorized: Invalid tunnel secret/);
  });

  // Killing one TCP connection with ss -K: the HTTP/2 transport's case (QUIC has no TCP socket to kill).
  it.runIf(protocol === 'http2')('reconnects a killed connection while the other HA connections keep serving', async () => {
    const e = await startEdge(t.home);
    t.procs.push(e.edge);
    const { connector } = await startConnector(t.home, e.tunnelPort, ['--hello-world', 'web'], 4, protocol);
    t.procs.push(connector);
    const ports = connectorPorts(e.tunnelPort);
    expect(ports).toHaveLength(4);
    execFileSync('ss', ['-K', 'dst', `127.0.0.1:${e.tunnelPort}`, 'sport', '=', `:${ports[0]}`]);
    // Requests keep working on the three others while the fourth comes back.
    for (let i = 0; i < 10; i++) expect((await hello(e.httpPort)).status).toBe(200);
    await connector.waitFor(/Connection terminated connIndex=\d/);
    await connector.waitFor(/(Registered tunnel connection connIndex=\d[^\n]*\n[\s\S]*){5}/, 20_000);
    expect(connectorPorts(e.tunnelPort)).toHaveLength(4);
  });

  it('survives an edge restart', async () => {
    const port = await freePort();
    let e = await startEdge(t.home, [], { tunnel: port });
    t.procs.push(e.edge);
    const { connector } = await startConnector(t.home, port, ['--hello-world', 'web'], 4, protocol);
    t.procs.push(connector);
    expect((await hello(e.httpPort)).status).toBe(200);
    await e.edge.stop();
    e = await startEdge(t.home, [], { tunnel: port });
    t.procs.push(e.edge);
    await e.edge.waitFor(/(Registered tunnel connection[^\n]*\n[\s\S]*){4}/, 30_000);
    expect((await hello(e.httpPort)).status).toBe(200);
  });

  it('on SIGTERM finishes an in-flight SSE stream within the grace period and refuses new requests', async () => {
    const origin = await startEventsOrigin(8, 250);
    try {
      const e = await startEdge(t.home);
      t.procs.push(e.edge);
      const { connector } = await startConnector(
        t.home,
        e.tunnelPort,
        ['--url', `http://127.0.0.1:${origin.port}`, '--grace-period', '10s', 'web'],
        4,
        protocol,
      );
      t.procs.push(connector);
      const res = await request(`http://127.0.0.1:${e.httpPort}/events`, { headers: { host: 'app.example.com' } });
      const body = res.body.text();
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      connector.child.kill('SIGTERM');
      await connector.waitFor(/Initiating graceful shutdown/);
      const during = await hello(e.httpPort);
      expect(during.status).toBe(502);
      expect(await body).toBe(Array.from({ length: 8 }, (_, n) => `data: event ${n}\n\n`).join(''));
      expect(await connector.exited()).toBe(0);
      // It left once the stream ended, not at the end of the 10 s grace period.
      expect(Date.now() - t0).toBeLessThan(8000);
    } finally {
      await origin.close();
    }
  });
});

// A crashed edge says nothing to its QUIC connectors; the restarted one (same identity)
// answers their next packet with a stateless reset instead of letting them wait for the
// 15 s idle timeout.
describe('QUIC stateless reset', () => {
  it('a connector learns at its next packet that a killed and restarted edge lost its connection', async () => {
    const port = await freePort();
    let e = await startEdge(t.home, [], { tunnel: port });
    t.procs.push(e.edge);
    // The restart below may take longer than the connector's 5 s of silence on a loaded machine:
    // it would redial as silent instead of hearing the reset.
    const { connector } = await withEnv({ OXY_CONNECTOR_SILENT_MS: '30000' }, () => startConnector(t.home, port, ['--hello-world', 'web'], 2, 'quic'));
    t.procs.push(connector);
    expect((await hello(e.httpPort)).status).toBe(200);
    await e.edge.stop('SIGKILL');
    e = await startEdge(t.home, [], { tunnel: port });
    t.procs.push(e.edge);
    await connector.waitFor(/Connection terminated .*QUIC stateless reset/, 15_000);
    await e.edge.waitFor(/(Registered tunnel connection[^\n]*\n[\s\S]*){2}/, 30_000);
    expect((await hello(e.httpPort)).status).toBe(200);
    expect(connector.output).not.toMatch(/idle timeout/);
  }, 60_000);
});
