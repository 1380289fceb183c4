// A connector whose host freezes (SIGSTOP: the kernel still ACKs, nothing answers, no FIN)
// must not stay registered at the edge until TCP gives up minutes later: the edge closes a
// connection whose PINGs go unanswered for as long as a dead edge's heartbeat takes to go
// stale, and `tunnel info` stops listing it. Once the host wakes, its connector registers again.
import { expect, it } from 'vitest';
import { request } from 'undici';
import { oxyJson } from '../../helpers/cli.js';
import { LOOPBACK_EDGE, OxyProcess, startConnector, useWebTunnel } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';

const t = useWebTunnel();

const connections = async () => {
  const info = await oxyJson<{ conns: { conns: { id: string }[] }[] }>(t.home, ['tunnel', 'info', 'web']);
  return info.conns.flatMap((c) => c.conns).length;
};

it.each(['http2', 'quic'] as const)(
  'over %s, a frozen connector is unregistered after 3 heartbeats of silence, and registers again once it wakes',
  async (protocol) => {
    // Heartbeat every second: a connection silent for 3 s is dead.
    const edge = new OxyProcess(t.home, [...LOOPBACK_EDGE], { OXY_EDGE_HEARTBEAT_MS: '1000' });
    t.procs.push(edge);
    const tunnelPort = Number((await edge.waitFor(/Tunnel listener ready protocol=http2 address=127\.0\.0\.1:(\d+)/))[1]);
    const httpPort = Number((await edge.waitFor(/Public HTTP listener ready address=127\.0\.0\.1:(\d+)/))[1]);
    const { connector } = await startConnector(t.home, tunnelPort, ['--hello-world', 'web'], 4, protocol);
    t.procs.push(connector);
    await until(async () => (await connections()) === 4, 10_000, 'four connections recorded');

    const frozenAt = Date.now();
    connector.child.kill('SIGSTOP');
    try {
      await edge.waitFor(/(Unregistered tunnel connection[^\n]*reason="the connector went silent"[^\n]*\n[\s\S]*){4}/, 20_000);
      // Not before 3 s of silence.
      expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(3000);
      await until(async () => (await connections()) === 0, 10_000, 'the frozen connections to leave tunnel info');
    } finally {
      connector.child.kill('SIGCONT');
    }
    const mark = connector.output.length;
    await until(() => (connector.output.slice(mark).match(/Registered tunnel connection/g) ?? []).length >= 4, 20_000, 'the woken connector to register again');
    const res = await request(`http://127.0.0.1:${httpPort}/`, { headers: { host: 'app.example.com' } });
    expect(res.statusCode).toBe(200);
    await res.body.text();
  },
  60_000,
);
