// An HTTP/2 connector SIGKILLed while the edge is sending it request bodies: the kernel's reset
// can reach the edge through a failed write before any read. Node's TLS socket then keeps that
// write "in progress" for good (nodejs/node#61304): the session stopped reading (the reset went
// unseen), and even closing it waited on that write, so the connection stayed registered past the
// 15 s silence watchdog. Frozen first (SIGSTOP), the connector leaves the edge's writes backed up
// when it dies, as a busy one does. Each round must unregister it within seconds.
import { expect, it } from 'vitest';
import { request } from 'undici';
import { useWebTunnel, startConnector, startEdge } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';

const t = useWebTunnel();

const ROUNDS = 3;
const UPLOADS = 4;
const UPLOAD_BYTES = 16 * 1024 * 1024;
/** Well under the 15 s silence watchdog, with room for a loaded machine. */
const UNREGISTERED_WITHIN_MS = 6000;

it('an HTTP/2 connector killed while uploads stream to it is unregistered within seconds, not by the silence watchdog', async () => {
  const e = await startEdge(t.home);
  t.procs.push(e.edge);
  const body = Buffer.alloc(UPLOAD_BYTES);
  for (let round = 0; round < ROUNDS; round++) {
    const { connector } = await startConnector(t.home, e.tunnelPort, ['--hello-world', '--ha-connections', '1', 'web'], 1);
    t.procs.push(connector);
    const uploads = Array.from({ length: UPLOADS }, () =>
      request(`http://127.0.0.1:${e.httpPort}/`, { method: 'POST', headers: { host: 'app.example.com' }, body })
        .then((r) => r.body.dump())
        .catch(() => undefined),
    );
    await new Promise((r) => setTimeout(r, 300));
    connector.child.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 1000));
    const mark = e.edge.output.length;
    const killedAt = Date.now();
    connector.kill();
    await until(
      () => e.edge.output.slice(mark).includes('Unregistered tunnel connection'),
      20_000,
      `round ${round}: the killed connector's connection to be unregistered`,
    );
    expect(Date.now() - killedAt, `round ${round}`).toBeLessThan(UNREGISTERED_WITHIN_MS);
    expect(e.edge.output.slice(mark)).not.toContain('The connector went silent');
    await Promise.all(uploads);
  }
}, 120_000);
