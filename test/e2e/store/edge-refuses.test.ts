/**
 * One edge that refuses a connector does not stop it while other edges serve it (issue 14
 * follow-up). The connector runs on a host of its own with a token (it trusts the edges by the
 * CA pin) and is given three edges: edge-a (the tunnel's store), edge-b (the same CA, another
 * store: it does not know the tunnel and refuses the registration) and edge-c (another CA: the
 * pin does not match). Every slot serves through edge-a; the bad edges are named in the log and
 * retried; when edge-b's address becomes an edge of the right store the slot moves back to it.
 * Only when every edge refuses does the connector exit, naming each edge's refusal. A certificate
 * that fails TLS verification (a CA file that trusts another CA) is a failed dial, as before.
All of it over HTTP/2 and over QUIC (the pin is checked after QUIC's handshake, not in TLS).
 */
import { execFile } from 'node:child_process';
import { cpSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { freePort, OxyProcess } from '../../helpers/processes.js';

const curl = (port: number) =>
  new Promise<string>((resolve) =>
    execFile('curl', ['--silent', '-i', '--max-time', '5', '-H', 'Host: app.example.com', `http://127.0.0.1:${port}/x`], (_err, stdout) => resolve(stdout)),
  );

describe.each(['http2', 'quic'] as const)('over %s', (protocol) => {
  const homes: { home: string; cleanup: () => void }[] = [];
  const procs: OxyProcess[] = [];
  let origin: http.Server;
  let token: string;
  type Edge = { proc: OxyProcess; tunnel: number; http: number };
  let a: Edge;
  let b: Edge;
  let c: Edge;
  /** The store and CA of edge-a; the connector's own host; edge-b's store (edge-a's CA); edge-c's (its own CA). */
  let store: string;
  let client: string;

  /** An edge of HOME on a loopback tunnel port listening for this round's protocol (QUIC shares the port number). */
  async function startEdgeOn(home: string, location: string, port?: number): Promise<Edge> {
    const tunnel = port ?? (await freePort());
    const proc = new OxyProcess(home, [
      ...['edge', 'run', '--tunnel-listen', `127.0.0.1:${tunnel}`, '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0'],
      ...['--location', location, ...(protocol === 'quic' ? [] : ['--no-quic']), '--loglevel', 'debug'],
    ]);
    procs.push(proc);
    await proc.waitFor(new RegExp(`Tunnel listener ready protocol=${protocol} address=127\\.0\\.0\\.1:${tunnel}`));
    const httpPort = await proc.waitFor(/Public HTTP listener ready address=127\.0\.0\.1:(\d+)/);
    return { proc, tunnel, http: Number(httpPort[1]) };
  }

  beforeAll(async () => {
    for (let i = 0; i < 4; i++) homes.push(tempHome());
    [store, client] = [homes[0].home, homes[1].home];
    origin = http.createServer((req, res) => res.end(`origin ${req.url}`));
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    await oxyOk(store, ['tunnel', 'create', 'web']);
    await oxyOk(store, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
    a = await startEdgeOn(store, 'edge-a');
    token = (await oxyOk(store, ['tunnel', 'token', 'web'])).trim();
    // edge-b: edge-a's CA (copied, as README says to for another edge), but a store without the tunnel.
    cpSync(join(store, 'edge'), join(homes[2].home, 'edge'), { recursive: true });
    b = await startEdgeOn(homes[2].home, 'edge-b');
    c = await startEdgeOn(homes[3].home, 'edge-c');
  });

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await new Promise((r) => origin?.close(r));
    for (const h of homes) h.cleanup();
  });

  const originUrl = () => `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  const run = (edges: number[]) =>
    new OxyProcess(client, [
      ...['tunnel', 'run', '--token', token, ...edges.flatMap((p) => ['--edge', `127.0.0.1:${p}`])],
      ...['--protocol', protocol, '--ha-connections', String(edges.length), '--url', originUrl()],
    ]);

  it('exits non-zero naming each edge when every edge refuses', async () => {
    const conn = run([b.tunnel, c.tunnel]);
    procs.push(conn);
    expect(await conn.exited()).not.toBe(0);
    // One error names what each edge said.
    expect(conn.output).toMatch(
      new RegExp(
        `Tunnel could not register: every edge refused the tunnel: .*127\\.0\\.0\\.1:(${b.tunnel}: Unauthorized|${c.tunnel}: The edge .*pinned CA key).*; 127\\.0\\.0\\.1:`,
      ),
    );
  }, 30_000);

  it('serves through the good edge while the others refuse it, names them, and moves back to an edge that accepts again', async () => {
    const conn = run([a.tunnel, b.tunnel, c.tunnel]);
    procs.push(conn);
    for (let i = 0; i < 3; i++) await conn.waitFor(new RegExp(`Registered tunnel connection connIndex=${i} .*location=edge-a`), 20_000);
    expect(conn.child.exitCode).toBe(null);
    // Each bad edge is named with what it said.
    await conn.waitFor(new RegExp(`edge=127\\.0\\.0\\.1:${b.tunnel}.*Unauthorized`));
    await conn.waitFor(new RegExp(`edge=127\\.0\\.0\\.1:${c.tunnel}.*pinned CA key`));
    expect(await curl(a.http)).toMatch(/^HTTP\/1\.1 200[\s\S]*origin \/x$/);
    // edge-b's address becomes an edge of the tunnel's store: slot 1 (its home) moves back there.
    await b.proc.stop('SIGKILL');
    await startEdgeOn(store, 'edge-b2', b.tunnel);
    await conn.waitFor(/Registered tunnel connection connIndex=1 .*location=edge-b2/, 20_000);
    expect(conn.child.exitCode).toBe(null);
  }, 60_000);

  it('an edge whose certificate does not verify (the CA file trusts another) is a failed dial: the others serve, and it never stops the connector', async () => {
    // On the store's own host the connector trusts edge-a's CA file: edge-c's certificate fails verification.
    const conn = new OxyProcess(store, [
      ...['tunnel', 'run', '--edge', `127.0.0.1:${a.tunnel}`, '--edge', `127.0.0.1:${c.tunnel}`, '--protocol', protocol, '--ha-connections', '2'],
      ...['--url', originUrl(), 'web'],
    ]);
    procs.push(conn);
    for (let i = 0; i < 2; i++) await conn.waitFor(new RegExp(`Registered tunnel connection connIndex=${i} .*location=edge-a`), 20_000);
    const failed = protocol === 'quic' ? 'QUIC handshake with' : 'TLS connection to';
    expect(conn.output).toMatch(new RegExp(`Unable to establish connection with the edge connIndex=1 .*${failed} 127\\.0\\.0\\.1:${c.tunnel} failed`));
    // Slot 1 keeps trying its own edge (debug) while it serves through edge-a, and the connector runs on.
    expect(conn.child.exitCode).toBe(null);
    expect(await curl(a.http)).toMatch(/^HTTP\/1\.1 200[\s\S]*origin \/x$/);
  }, 40_000);
});
