import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { privilegedDescribe } from '../../helpers/privileged.js';
import { IpEdge, SeqpacketOnRamp, type IpSession } from '../../../src/engine/edge/ip/index.js';
import { SeqpacketSocket } from '../../../src/engine/native/index.js';
import { TcpFlag, buildIcmpEcho, buildTcp, buildUdp, parseAddress, parsePacket } from '../../../src/engine/packet/index.js';

const A = parseAddress('198.18.1.1');
const B = parseAddress('198.18.2.2');
const A6 = parseAddress('2001:db8:1::1');
const B6 = parseAddress('2001:db8:2::2');

/** Valid packets of every kind the edge handles, to mutate. */
const seeds = [
  buildTcp({ src: A, dst: B, srcPort: 1234, dstPort: 80, seq: 1, flags: TcpFlag.SYN, options: Buffer.from([2, 4, 5, 0xb4]) }),
  buildTcp({ src: A6, dst: B6, srcPort: 1234, dstPort: 80, seq: 1, flags: TcpFlag.SYN }),
  buildUdp({ src: A, dst: B, srcPort: 53, dstPort: 53, payload: Buffer.from('query') }),
  buildUdp({ src: A6, dst: B6, srcPort: 53, dstPort: 53, payload: Buffer.from('query') }),
  buildIcmpEcho({ src: A, dst: B, id: 1, seq: 1, payload: Buffer.from('ping') }),
  buildIcmpEcho({ src: A6, dst: B6, id: 1, seq: 1 }),
];

const mutated = fc
  .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.nat())
  .map(([seed, flips, cut]) => {
    const packet = Buffer.from(seed);
    for (const [at, value] of flips) packet[at % packet.length] = value;
    return cut % 4 === 0 ? packet.subarray(0, cut % (packet.length + 1)) : packet;
  });
const anyPacket = fc.oneof(
  mutated,
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
);

privilegedDescribe('on-ramp path fuzz: malformed and mutated packets never crash the edge', () => {
  let edge: IpEdge;
  let onRamp: SeqpacketOnRamp;
  const path = `\0oxy-ip-fuzz-${process.pid}-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    edge = await IpEdge.create({ limits: { maxFlows: 2000 }, timeouts: { tcpIdleMs: 2000, udpIdleMs: 2000 } });
    onRamp = new SeqpacketOnRamp(edge, path);
  });
  afterAll(() => {
    onRamp?.close();
    edge?.close();
  });

  it('session.receive: 100,000 random and mutated packets (time-bounded), counted by reason', () => {
    let sent = 0;
    const session: IpSession = edge.openSession({ tenant: 'fuzz', vnet: '' }, () => sent++);
    fc.assert(
      fc.property(anyPacket, (packet) => {
        session.receive(packet);
      }),
      { numRuns: 100_000, interruptAfterTimeLimit: 20_000 },
    );
    const malformed = Object.values(edge.stats.malformed).reduce((a, b) => a + (b ?? 0), 0);
    expect(malformed).toBeGreaterThan(1000);
    expect(edge.stats.packetsIn).toBeGreaterThanOrEqual(100_000);
    session.close();
  }, 40_000);

  it('over SEQPACKET: garbage datagrams are dropped and the tunnel still works afterwards', async () => {
    const socket = SeqpacketSocket.connect(path);
    socket.on('error', () => {});
    socket.send(Buffer.from(JSON.stringify({ tenant: 'fuzz-wire', vnet: '' })));
    const samples = fc.sample(anyPacket, { numRuns: 3000, seed: 42 });
    for (const packet of samples) if (packet.length > 0) socket.send(packet);
    const reply = new Promise<Buffer>((resolve) => {
      socket.on('message', (data) => {
        const view = parsePacket(Buffer.from(data));
        if (view.ok && view.srcPort === 7 && view.payload.toString() === 'alive?') resolve(Buffer.from(data));
      });
    });
    socket.send(buildUdp({ src: A, dst: B, srcPort: 4321, dstPort: 7, payload: Buffer.from('alive?') }));
    expect((await reply).length).toBeGreaterThan(0);
    socket.close();
  });
});
