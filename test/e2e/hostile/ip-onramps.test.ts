/**
 * Hostile input on the IP on-ramps of a real edge, while good clients keep being served:
 * generated datagrams (fast-check) at the QUIC tunnel listener (UDP 7844, which carries the
 * connector's own QUIC connection), at the GUE listener (garbage, mutated headers, and
 * authentic datagrams carrying mutated IP packets), and at the SEQPACKET IP tunnel socket
 * (garbage contexts, then valid contexts followed by mutated packets, empty and oversized
 * messages). After every round a device behind `warp connect` (SEQPACKET, then the QUIC
 * connector) and an authenticated GUE sender each get their bytes echoed back exactly, and
 * no process crashed or logged a bug. Bounded: fixed sample counts with fixed seeds.
 *
 *   device ns ──SEQPACKET── edge ns ──veth── dc ns (QUIC connector, echo host 198.18.0.10; GUE sender)
 */
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GueClient } from '../../../src/engine/edge/ip/index.js';
import { SeqpacketSocket } from '../../../src/engine/native/index.js';
import { TcpFlag, buildIcmpEcho, buildTcp, buildUdp, parseAddress } from '../../../src/engine/packet/index.js';
import { quiche, buildQuicheConfig } from '../../../src/engine/transport/quic/config.js';
import { oxyOk } from '../../helpers/cli.js';
import { GueSender } from '../../helpers/gue-sender.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';

const DEVICE = parseAddress('198.18.9.1');
const HOST = parseAddress('198.18.0.10');

/** Valid IP packets toward the echo host behind the tunnel, to mutate. */
const ipSeeds = [
  buildUdp({ src: DEVICE, dst: HOST, srcPort: 40000, dstPort: 5353, payload: Buffer.from('hostile udp') }),
  buildTcp({ src: DEVICE, dst: HOST, srcPort: 40001, dstPort: 5353, seq: 1, flags: TcpFlag.SYN, options: Buffer.from([2, 4, 5, 0xb4]) }),
  buildIcmpEcho({ src: DEVICE, dst: HOST, id: 7, seq: 1, payload: Buffer.from('ping') }),
  buildUdp({ src: parseAddress('2001:db8:9::1'), dst: parseAddress('2001:db8:10::10'), srcPort: 1, dstPort: 5353, payload: Buffer.from('v6') }),
];

/** A seed with 1–6 bytes overwritten and, one time in four, cut short. */
const mutate = (seeds: Buffer[]) =>
  fc
    .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.nat())
    .map(([seed, flips, cut]) => {
      const b = Buffer.from(seed);
      for (const [at, value] of flips) b[at % b.length] = value;
      return cut % 4 === 0 ? b.subarray(0, Math.max(1, cut % (b.length + 1))) : b;
    });
const bytes = (max: number) => fc.uint8Array({ minLength: 1, maxLength: max }).map((b) => Buffer.from(b));
const ipPackets = fc.oneof(mutate(ipSeeds), bytes(120));

/** Real QUIC Initial packets (a client's first flight) toward the edge, to mutate. */
function quicInitials(): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < 3; i++) {
    const config = buildQuicheConfig('client', { ca: [] }, {}, { idleTimeoutMs: 5000 });
    const conn = quiche.Connection.connect(null, randomBytes(20), { host: '198.18.1.2', port: 40000 + i }, { host: '198.18.1.1', port: 7844 }, config);
    const buf = Buffer.alloc(1500);
    const sent = conn.send(buf);
    if (sent) out.push(Buffer.from(buf.subarray(0, sent[0])));
  }
  return out;
}

/** QUIC-shaped garbage: mutated Initials, long headers with random fields, short headers. */
const quicDatagrams = (initials: Buffer[]) =>
  fc.oneof(
    mutate(initials),
    fc
      .tuple(fc.integer({ min: 0xc0, max: 0xff }), fc.constantFrom(1, 0, 0xff00001d, 0x1a2a3a4a), fc.nat(25), bytes(200))
      .map(([first, version, dcidLength, rest]) => {
        const head = Buffer.alloc(6);
        head[0] = first;
        head.writeUInt32BE(version >>> 0, 1);
        head[5] = dcidLength;
        return Buffer.concat([head, rest]);
      }),
    fc.tuple(fc.integer({ min: 0x40, max: 0x7f }), bytes(100)).map(([first, rest]) => Buffer.concat([Buffer.from([first]), rest])),
    bytes(1300),
  );

/** GUE-shaped garbage: mutated authentic datagrams (MAC now wrong), random headers, random bytes. */
const gueDatagrams = (authentic: Buffer[]) =>
  fc.oneof(
    mutate(authentic),
    fc
      .tuple(fc.nat(31), fc.constantFrom(4, 41, 0, 17), fc.constantFrom(1, 2, 3), fc.nat(255), fc.nat(255), bytes(180))
      .map(([hlen, proto, version, t, v, rest]) => Buffer.concat([Buffer.from([hlen, proto, 0, 0, 0x4f, version, t, v]), rest])),
    bytes(300),
  );

/** First messages on a SEQPACKET connection: the context, as JSON or not. */
const contexts = fc.oneof(
  fc.json().map((j) => Buffer.from(j)),
  fc
    .record({ tenant: fc.oneof(fc.string(), fc.integer(), fc.constant(null)), vnet: fc.oneof(fc.string(), fc.constant('site'), fc.array(fc.nat())) })
    .map((o) => Buffer.from(JSON.stringify(o))),
  bytes(200),
);

privilegedDescribe('hostile input on the QUIC, GUE and SEQPACKET on-ramps of a real edge', () => {
  let site: VnetSite;
  let sender: GueSender;
  let device: { device: string; secret: string };
  let socketPath: string;

  beforeAll(async () => {
    site = await startVnetSite({
      protocol: 'quic',
      edgeArgs: ['--gue-listen', '198.18.1.1:6080'],
      beforeEdge: async (home) => {
        const token = JSON.parse(Buffer.from((await oxyOk(home, ['warp', 'enroll', 'site-router'])).trim(), 'base64').toString()) as { d: string; s: string };
        device = { device: token.d, secret: token.s };
      },
    });
    socketPath = join(site.home, 'ip-tunnel.sock');
    const echo = site.spawnIn(site.dc, process.execPath, [
      '-e',
      `const u = require('dgram').createSocket('udp4');
       u.on('message', (m, r) => u.send(m, r.port, r.address));
       u.bind(5353, '198.18.0.10', () => console.log('echo ready'));`,
    ]);
    await echo.waitFor(/echo ready/);
    sender = GueSender.start(site.dc, '198.18.1.1', 6080);
  });

  afterAll(async () => {
    await sender?.stop();
    await site?.close();
  });

  /** The good clients: a device through warp (SEQPACKET → QUIC connector) and a GUE site. */
  const alive = (round: number) => {
    for (const p of [site.edge, site.connector, site.warp]) {
      expect(p.output, `round ${round}`).not.toMatch(/Bug: |Uncaught|\bat .*\(node:/);
      expect(p.child.exitCode, p.output).toBeNull();
    }
  };
  const goodClientsServed = async (round: number) => {
    alive(round);
    const payload = randomBytes(600).toString('hex');
    const r = await site.inDevice(process.execPath, [
      '-e',
      `const s = require('dgram').createSocket('udp4');
       s.on('message', (m) => { console.log(m.toString()); process.exit(0); });
       // UDP: a lost datagram is retried, as any UDP client does; a wrong one fails the test.
       const send = () => s.send(process.argv[1], 5353, '198.18.0.10');
       send();
       setInterval(send, 1000);
       setTimeout(() => process.exit(3), 8000);`,
      payload,
    ]);
    expect(r.stdout.trim(), `round ${round}: the device's echo`).toBe(payload);
    const gue = await sender.do<{ reply: string | null }>({ op: 'request', ...device, vnet: 'site', payload: `good-${round}`, timeoutMs: 8000, retryMs: 1000 });
    expect(gue.reply, `round ${round}: the GUE site's echo`).toBe(`good-${round}`);
    alive(round);
  };

  it('QUIC listener: 3,000 generated datagrams, the connector keeps its connection and serves', async () => {
    await goodClientsServed(0);
    const samples = fc.sample(quicDatagrams(quicInitials()), { numRuns: 3000, seed: 12 });
    for (let i = 0; i < samples.length; i += 500) {
      await sender.do({ op: 'raw', port: 7844, datagrams: samples.slice(i, i + 500).map((b) => b.toString('hex')) });
      await goodClientsServed(1 + i / 500);
    }
    expect(site.connector.output).not.toMatch(/Unregistered tunnel connection|Connection terminated/);
  }, 55_000);

  it('GUE listener: 3,000 generated datagrams and 1,000 authentic ones with mutated packets', async () => {
    const client = new GueClient({ deviceId: device.device, secret: device.secret });
    const authentic = ipSeeds.map((p) => client.encapsulate(p, { vnet: 'site' }));
    const garbage = fc.sample(gueDatagrams(authentic), { numRuns: 3000, seed: 13 });
    // Authentic: the edge must take the inner packets apart like any device's.
    const inner = fc.sample(ipPackets, { numRuns: 1000, seed: 14 }).map((p) => client.encapsulate(p, { vnet: 'site' }));
    const all = [...garbage, ...inner];
    for (let i = 0; i < all.length; i += 500) {
      await sender.do({ op: 'raw', port: 6080, datagrams: all.slice(i, i + 500).map((b) => b.toString('hex')) });
      await goodClientsServed(100 + i / 500);
    }
  }, 55_000);

  it('SEQPACKET socket: 300 generated contexts, then 3,000 mutated packets after a valid one', async () => {
    // The edge closes a connection whose context it refuses: later sends may meet EPIPE.
    const connect = async (): Promise<SeqpacketSocket> => {
      // EAGAIN: the listen backlog is full; let the edge accept (a hostile client retries too).
      for (let tries = 0; ; tries++) {
        try {
          return SeqpacketSocket.connect(socketPath);
        } catch (err) {
          if ((err as { code?: string }).code !== 'EAGAIN' || tries > 200) throw err;
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    };
    const socket = async (first: Buffer) => {
      const s = await connect();
      s.on('error', () => undefined);
      const send = (b: Buffer) => {
        try {
          s.send(b);
        } catch (err) {
          if ((err as { code?: string }).code !== 'EPIPE') throw err;
        }
      };
      send(first);
      return { send, close: () => s.close() };
    };
    for (const [n, context] of fc.sample(contexts, { numRuns: 300, seed: 15 }).entries()) {
      const s = await socket(context);
      s.send(ipSeeds[n % ipSeeds.length]!);
      if (n % 3 === 0) s.send(Buffer.alloc(0));
      s.close();
    }
    await goodClientsServed(200);
    const s = await socket(Buffer.from(JSON.stringify({ tenant: 'hostile', vnet: 'site' })));
    const packets = fc.sample(ipPackets, { numRuns: 3000, seed: 16 });
    for (let i = 0; i < packets.length; i++) {
      s.send(packets[i]!);
      if (i % 1000 === 999) await goodClientsServed(201 + i / 1000);
    }
    s.send(Buffer.alloc(65_000, 0x45));
    s.send(Buffer.alloc(0));
    s.close();
    await goodClientsServed(300);
  }, 55_000);
});
