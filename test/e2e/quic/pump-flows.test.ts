// Private TCP flows (a stream per flow) over the connector's QUIC on ngtcp2: the dialed socket is
// pumped by the addon (plain: every byte both ways without JS). An in-process edge opens flows
// through its egress to a host on loopback, with a connector process: bulk both ways byte-exact,
// each direction half-closing on its own (the host answers after the flow's FIN, then ends), a
// host that resets mid-flow (the flow's stream fails), and OXY_QUIC_PUMP=records keeps flows in JS.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyJson, oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess } from '../../helpers/processes.js';
import { Store } from '../../../src/store/index.js';
import { runEdge } from '../../../src/engine/edge/run.js';
import type { EdgeServer } from '../../../src/engine/edge/server.js';
import { createLogger } from '../../../src/engine/observe/log.js';
import type { TunnelStream } from '../../../src/engine/transport/types.js';

const BULK = randomBytes(24 * 1024 * 1024);
const RESET_AFTER = 256 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let home: string;
let cleanup: () => void;
let store: Store;
let edge: EdgeServer;
let host: Server;
let lab = '';
/** The running connector's process (the host stops it around its reset). */
let connectorPid: number | undefined;

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  // The host: "hi\n", then an echo of everything; after the client's FIN, "bye <bytes> <sha-256>\n"
  // and its own FIN. A flow whose first bytes are "RST" is reset once RESET_AFTER bytes came, with the
  // connector stopped (SIGSTOP) from just before a last write of a few bytes until 50 ms after the
  // reset: it wakes with bytes unread and the reset behind them (which libuv reported as an end, not
  // a reset, when its last read was short: see native/tcp-info.ts revealResets).
  host = createServer({ allowHalfOpen: true }, (s: Socket) => {
    s.on('error', () => undefined);
    const hash = createHash('sha256');
    let bytes = 0;
    let head = '';
    s.write('hi\n');
    s.on('data', (c: Buffer) => {
      // The first three bytes, however the connector's writes split them.
      if (head.length < 3) head += c.subarray(0, 3 - head.length).toString('latin1');
      const reset = head === 'RST';
      bytes += c.length;
      hash.update(c);
      if (reset && bytes >= RESET_AFTER) {
        // Once every echo is the kernel's (a write queued in Node would go with the reset), and sent
        // at once (Nagle would hold the last bytes for an ACK: the reset would drop them).
        s.pause();
        s.setNoDelay(true);
        s.write(c, () => {
          const pid = connectorPid;
          if (pid) stopProcess(pid);
          s.write('unread');
          s.resetAndDestroy();
          if (pid) setTimeout(() => process.kill(pid, 'SIGCONT'), 50);
        });
        return;
      }
      if (!s.write(c)) {
        s.pause();
        s.once('drain', () => s.resume());
      }
    });
    s.on('end', () => s.end(`bye ${bytes} ${hash.digest('hex')}\n`));
  });
  await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
  await oxyOk(home, ['vnet', 'add', 'lab']);
  await oxyOk(home, ['tunnel', 'create', 'dc1']);
  // Store data only: traffic goes to 127.0.0.1, inside this /32.
  await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'lab', '127.0.0.1/32', 'dc1']);
  lab = (await oxyJson<{ id: string; name: string }[]>(home, ['vnet', 'list'])).find((v) => v.name === 'lab')!.id;
  store = await Store.open(home);
  edge = await runEdge({ home, store, log: createLogger({ level: 'silent' }), tunnelListen: '127.0.0.1:0', location: 'test' });
});

afterAll(async () => {
  await edge?.stop();
  await store?.close();
  host?.close();
  cleanup();
});

/** SIGSTOP, and waits (at most 1 s) until the process is stopped: a signal takes a moment to land. */
function stopProcess(pid: number): void {
  process.kill(pid, 'SIGSTOP');
  const until = Date.now() + 1000;
  while (Date.now() < until && !/^\d+ \(.*\) [tT] /.test(readFileSync(`/proc/${pid}/stat`, 'latin1')));
}

/** Writes `data` on the flow, then its FIN (unless `fin` is false); resolves with everything the flow read until its end. */
function exchange(stream: TunnelStream, data: Buffer, fin = true): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    stream.on('data', (c: Buffer) => got.push(c));
    stream.on('end', () => resolve(Buffer.concat(got)));
    stream.on('error', reject);
    if (fin) stream.end(data);
    else stream.write(data);
  });
}

describe.each(['pumped', 'records'] as const)('private TCP flows over QUIC (ngtcp2 connector), %s', (mode) => {
  let connector: OxyProcess;
  beforeAll(async () => {
    const env = { OXY_QUIC_IMPL: 'ngtcp2', NODE_DEBUG: 'oxy:transport:flow-pump', ...(mode === 'records' ? { OXY_QUIC_PUMP: 'records' } : {}) };
    const port = edge.tunnelAddresses[0]!.address.port;
    connector = new OxyProcess(
      home,
      ['tunnel', 'run', '--edge', `127.0.0.1:${port}`, '--protocol', 'quic', '--ha-connections', '1', '--hello-world', 'dc1'],
      env,
    );
    await connector.waitFor(/Registered tunnel connection connIndex=0 [^\n]*protocol=quic/);
    connectorPid = connector.child.pid;
  });
  afterAll(() => {
    connectorPid = undefined;
    return connector?.stop();
  });

  it('carries 24 MiB both ways byte-exact; each side half-closes on its own', async () => {
    const port = (host.address() as AddressInfo).port;
    for (let i = 0; i < 2; i++) {
      const { stream } = await edge.egress.open('tcp', lab, '127.0.0.1', port);
      const got = await exchange(stream, BULK);
      // The banner, the echo, then what the host wrote after the flow's FIN reached it.
      expect(got.subarray(0, 3).toString()).toBe('hi\n');
      expect(got.length).toBe(3 + BULK.length + `bye ${BULK.length} ${sha(BULK)}\n`.length);
      expect(sha(got.subarray(3, 3 + BULK.length))).toBe(sha(BULK));
      expect(got.subarray(3 + BULK.length).toString()).toBe(`bye ${BULK.length} ${sha(BULK)}\n`);
    }
    // Short flows, many at once.
    const small = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const { stream } = await edge.egress.open('tcp', lab, '127.0.0.1', port);
        return (await exchange(stream, Buffer.from(`flow ${i}\n`))).toString();
      }),
    );
    expect(small).toEqual(small.map((_, i) => `hi\nflow ${i}\nbye ${`flow ${i}\n`.length} ${sha(Buffer.from(`flow ${i}\n`))}\n`));
    if (mode === 'pumped') expect(connector.output).toMatch(/flow socket pumped by the addon/);
    else expect(connector.output).not.toMatch(/flow socket pumped by the addon/);
  }, 90_000);

  it("a host that resets mid-flow resets the flow's stream; the next flow is served", async () => {
    const port = (host.address() as AddressInfo).port;
    const { stream } = await edge.egress.open('tcp', lab, '127.0.0.1', port);
    // No FIN, and nothing more to write when the reset comes: the connector only reads then (a
    // write of its would meet the reset first and fail).
    const got = await exchange(stream, Buffer.concat([Buffer.from('RST'), BULK.subarray(0, RESET_AFTER - 3)]), false).then(
      (b) => b.toString('latin1'),
      (err: Error) => err,
    );
    // The host's reset is the flow's: the stream is reset (never ended), pumped or through JS.
    expect(got).toBeInstanceOf(Error);
    expect((got as Error).message).toMatch(/reset by peer/);
    const next = await edge.egress.open('tcp', lab, '127.0.0.1', port);
    expect((await exchange(next.stream, Buffer.from('again\n'))).toString()).toMatch(/^hi\nagain\nbye 6 /);
    expect(connector.child.exitCode).toBeNull();
  }, 60_000);
});
