import { createSocket, type Socket } from 'node:dgram';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { createHarness, type Harness } from '../ip/harness.js';
import { logSink } from './support.js';
import type { IpEdge } from '../../../src/engine/edge/ip/index.js';
import { HookRunner, HookTrace, validateHooks } from '../../../src/engine/hooks/index.js';
import { attachPacketHook, withIpHooks, type FlowContexts } from '../../../src/engine/edge/pipeline/index.js';
import { buildUdp, parseAddress, parsePacket } from '../../../src/engine/packet/index.js';

// egress.udpConnectOverride on upgraded UDP flows: the app hands back its own association
// (here a UDP socket to an uppercasing server on loopback) and the flow's datagrams use it.
privilegedDescribe('egress.udpConnectOverride', () => {
  let h: Harness;
  let server: Socket;
  const trace = new HookTrace();
  const seen: string[] = [];

  beforeAll(async () => {
    server = createSocket('udp4');
    server.on('message', (m, r) => server.send(Buffer.from(String(m).toUpperCase()), r.port, r.address));
    await new Promise<void>((resolve) => server.bind(0, '127.0.0.1', () => resolve()));
    const port = server.address().port;
    const runner = new HookRunner(
      validateHooks('test', {
        egress: {
          udpConnectOverride(upstream: { address: string; port: number }) {
            seen.push(`${upstream.address}:${upstream.port}`);
            const s = createSocket('udp4');
            s.connect(port, '127.0.0.1');
            return {
              send: (p: Buffer) => s.send(p),
              onMessage: (receive: (p: Buffer) => void) => void s.on('message', (m) => receive(m)),
              close: () => s.close(),
            };
          },
        },
      }),
      { log: logSink().log, trace },
    );
    const flows: FlowContexts = new WeakMap();
    h = await createHarness(withIpHooks(runner, {}, undefined, flows));
    attachPacketHook(h.edge as IpEdge<unknown>, runner, flows);
  });
  afterAll(() => {
    h?.close();
    server?.close();
  });

  it("carries the flow's datagrams over the association the hook returned", async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: '' });
    try {
      const replies: string[] = [];
      t.onPacket = (packet) => {
        const v = parsePacket(packet);
        if (v.ok && v.srcPort === 53 && v.dstPort === 5353) replies.push(v.payload.toString());
      };
      const send = (text: string) =>
        t.socket.send(buildUdp({ src: parseAddress('198.18.1.1'), dst: parseAddress('198.18.2.2'), srcPort: 5353, dstPort: 53, payload: Buffer.from(text) }));
      send('ping');
      send('again');
      await expect.poll(() => replies, { timeout: 5000 }).toEqual(['PING', 'AGAIN']);
      expect(seen).toEqual(['198.18.2.2:53']);
    } finally {
      t.close();
    }
    // The flow's trace is complete once the flow ended (here: its tunnel closed).
    expect((await trace.waitFor()).hooks).toEqual(['egress.udpConnectOverride']);
  });
});
