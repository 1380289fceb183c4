// A connector that hangs while another connector of its tunnel serves (split from
// connector-restart.test.ts so that the two files run in parallel).
import { describe, expect, it } from 'vitest';
import { OxyProcess, useWebTunnel, PROTOCOLS, startConnector, startEdge, tunnelRunArgs } from '../../helpers/processes.js';
import { clientLoad } from './client-load.js';

const t = useWebTunnel();

// A connector that hangs (SIGSTOP: its kernel still ACKs TCP, nothing answers above it) while
// another connector of the tunnel serves: its connections leave new streams and PINGs
// unanswered, and after 1 s the edge stops picking them.
describe.each(PROTOCOLS)('a hung connector over %s', (protocol) => {
  it('stops getting requests: those sent 2.5 s after it hung all go to the other connector', async () => {
    const e = await startEdge(t.home);
    t.procs.push(e.edge);
    const hung = await startConnector(t.home, e.tunnelPort, ['--ha-connections', '2', '--hello-world', 'web'], 2, protocol);
    t.procs.push(hung.connector);
    const other = new OxyProcess(t.home, tunnelRunArgs(e.tunnelPort, protocol, ['--ha-connections', '2', '--hello-world', 'web']));
    t.procs.push(other);
    await e.edge.waitFor(/(Registered tunnel connection[^\n]*\n[\s\S]*){4}/);
    hung.connector.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    try {
      // Clients that give up after 2 s: a request stuck on the hung connector does not hold its client for long.
      const traffic = clientLoad(e.httpPort, 2000);
      await new Promise((r) => setTimeout(r, 6000));
      await traffic.stop();
      const after = traffic.samples.filter((s) => s.at >= stoppedAt + 2500);
      expect(after.length).toBeGreaterThan(10);
      // Failures as [ms after the hang, ms taken, status], to read in a failure message.
      expect(after.filter((s) => s.status !== 200).map((s) => [s.at - stoppedAt, s.ms, s.status])).toEqual([]);
    } finally {
      hung.connector.child.kill('SIGCONT');
    }
  }, 60_000);
});
