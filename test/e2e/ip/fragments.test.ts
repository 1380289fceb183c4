/**
 * IP fragments on the edge's on-ramp path: reassembled per scope, then served as if the
 * datagram had arrived whole. First with crafted fragments fed to a session, then with a
 * real kernel in a device namespace whose TUN has a 1280-byte MTU, so `ping -s 3000` and
 * a 4,000-byte UDP datagram leave it in fragments.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';

import { privilegedDescribe } from '../../helpers/privileged.js';
import { useNetns } from '../../helpers/netns.js';
import { IpEdge, SeqpacketOnRamp, type IpSession } from '../../../src/engine/edge/ip/index.js';
import {
  IpProtocol,
  TcpFlag,
  TransportKind,
  buildFragment,
  buildIcmpEcho,
  buildTcp,
  buildUdp,
  fragmentPacket,
  parseAddress,
  type PacketView,
} from '../../../src/engine/packet/index.js';
import { parseOk } from '../../unit/packet/helpers.js';
import { attachDevice, run, type Device } from './device.js';

const CLIENT4 = parseAddress('198.18.1.1');
const SERVER4 = parseAddress('198.18.2.2');
const CLIENT6 = parseAddress('2001:db8:1::1');
const SERVER6 = parseAddress('2001:db8:2::2');

const bytes = (size: number, seed = 0): Buffer => Buffer.from(Array.from({ length: size }, (_, i) => (i * 13 + seed) & 0xff));

privilegedDescribe('IP edge: fragments from a session are reassembled, then served as whole datagrams', () => {
  let edge: IpEdge;
  beforeAll(async () => {
    edge = await IpEdge.create({ reassembly: { timeoutMs: 300 } });
  });
  afterAll(() => edge?.close());

  const sessions: IpSession[] = [];
  afterEach(() => {
    for (const s of sessions.splice(0)) s.close();
  });
  function open(tenant: string): { session: IpSession; replies: PacketView[] } {
    const replies: PacketView[] = [];
    const session = edge.openSession({ tenant, vnet: '' }, (packet) => replies.push(parseOk(Buffer.from(packet))));
    sessions.push(session);
    return { session, replies };
  }

  for (const [version, client, server] of [
    [4, CLIENT4, SERVER4],
    [6, CLIENT6, SERVER6],
  ] as const) {
    it(`IPv${version}: a 4,000-byte UDP datagram in 1,280-byte fragments, out of order, is echoed whole`, () => {
      const { session, replies } = open(`udp${version}`);
      const before = edge.stats.reassembled;
      const datagram = buildUdp({ src: client, dst: server, srcPort: 40000, dstPort: 7, payload: bytes(4000), dontFragment: false, identification: 42 });
      const pieces = fragmentPacket(datagram, 1280, 42);
      expect(pieces.length).toBe(4);
      for (const piece of [pieces[3], pieces[1], pieces[0], pieces[2]]) session.receive(piece);
      expect(edge.stats.reassembled).toBe(before + 1);
      expect(replies).toHaveLength(1);
      expect([replies[0].transport, replies[0].srcPort, replies[0].dstPort]).toEqual([TransportKind.Udp, 7, 40000]);
      expect(replies[0].payload.equals(bytes(4000))).toBe(true);
      const flow = [...edge.table.flows()].find((f) => f.tenant === `udp${version}`)!;
      expect([flow.packetsIn, flow.bytesIn]).toEqual([1, datagram.length]);
    });

    it(`IPv${version}: a 3,000-byte ping in fragments is answered`, () => {
      const { session, replies } = open(`ping${version}`);
      const request = buildIcmpEcho({ src: client, dst: server, id: 7, seq: 1, payload: bytes(3000, 1), dontFragment: false, identification: 43 });
      for (const piece of fragmentPacket(request, 1280, 43)) session.receive(piece);
      expect(replies).toHaveLength(1);
      expect([replies[0].isEcho, replies[0].echoId, replies[0].echoSeq]).toEqual([true, 7, 1]);
      expect(replies[0].payload.equals(bytes(3000, 1))).toBe(true);
    });

    it(`IPv${version}: a SYN in tiny fragments (8 bytes first, RFC 1858) is decided on the whole segment and answered by the kernel`, async () => {
      const { session, replies } = open(`tcp${version}`);
      const syn = buildTcp({
        src: client,
        dst: server,
        srcPort: 40001,
        dstPort: 80,
        seq: 1000,
        flags: TcpFlag.SYN,
        dontFragment: false,
        identification: 44,
        options: Buffer.from([2, 4, 0x05, 0x00]),
      });
      const headerLength = version === 4 ? 20 : 40;
      const tcpLength = syn.length - headerLength;
      session.receive(buildFragment(syn, 8, tcpLength, 44));
      session.receive(buildFragment(syn, 0, 8, 44));
      await expect.poll(() => replies.length).toBeGreaterThan(0);
      expect([replies[0].protocol, replies[0].tcpFlags, replies[0].tcpAck, replies[0].dstPort]).toEqual([
        IpProtocol.TCP,
        TcpFlag.SYN | TcpFlag.ACK,
        1001,
        40001,
      ]);
    });

    it(`IPv${version}: overlapping fragments drop the datagram; a missing one times out with ICMP "reassembly time exceeded"`, async () => {
      const { session, replies } = open(`bad${version}`);
      const datagram = buildUdp({ src: client, dst: server, srcPort: 40002, dstPort: 7, payload: bytes(3000), dontFragment: false, identification: 45 });
      const pieces = fragmentPacket(datagram, 1280, 45);
      const overlaps = edge.stats.dropped['fragment-overlap'] ?? 0;
      session.receive(pieces[0]);
      session.receive(buildFragment(datagram, 1200, 1600, 45));
      session.receive(pieces[1]);
      session.receive(pieces[2]);
      expect(edge.stats.dropped['fragment-overlap']).toBe(overlaps + 1);
      expect(replies).toHaveLength(0);
      // Another datagram lacks its middle fragment: after the timeout the sender hears of it.
      const timeouts = edge.stats.dropped['fragment-timeout'] ?? 0;
      const next = fragmentPacket(
        buildUdp({ src: client, dst: server, srcPort: 40002, dstPort: 7, payload: bytes(3000), dontFragment: false, identification: 48 }),
        1280,
        48,
      );
      session.receive(next[0]);
      session.receive(next[2]);
      await expect.poll(() => replies.length, { timeout: 3000 }).toBe(1);
      expect([replies[0].icmpType, replies[0].icmpCode]).toEqual(version === 4 ? [11, 1] : [3, 1]);
      expect(replies[0].dst.equals(client)).toBe(true);
      // Two datagrams timed out: the one left after the overlap (its first fragment was dropped with it) and this one.
      expect(edge.stats.dropped['fragment-timeout']).toBe(timeouts + 2);
      expect([edge.reassembler.pending, edge.reassembler.bytes]).toEqual([0, 0]);
    });
  }

  it('two tenants sending identical fragments (same addresses and identification) each get their own datagram back', () => {
    const a = open('tenant-a');
    const b = open('tenant-b');
    const datagram = (seed: number) =>
      buildUdp({ src: CLIENT4, dst: SERVER4, srcPort: 40003, dstPort: 7, payload: bytes(3000, seed), dontFragment: false, identification: 46 });
    const piecesA = fragmentPacket(datagram(1), 1280, 46);
    const piecesB = fragmentPacket(datagram(2), 1280, 46);
    for (let i = 0; i < piecesA.length; i++) {
      a.session.receive(piecesA[i]);
      b.session.receive(piecesB[i]);
    }
    expect(a.replies.map((r) => r.payload.equals(bytes(3000, 1)))).toEqual([true]);
    expect(b.replies.map((r) => r.payload.equals(bytes(3000, 2)))).toEqual([true]);
  });

  it('an IPv6 atomic fragment (offset 0, M=0) is served as a plain packet', () => {
    const { session, replies } = open('atomic');
    const plain = buildUdp({ src: CLIENT6, dst: SERVER6, srcPort: 40004, dstPort: 7, payload: Buffer.from('atomic') });
    const atomic = buildFragment(plain, 0, plain.length - 40, 47, false);
    expect(parseOk(atomic).isFragment).toBe(false);
    const before = edge.stats.reassembled;
    session.receive(atomic);
    expect(replies.map((r) => r.payload.toString())).toEqual(['atomic']);
    expect(edge.stats.reassembled).toBe(before);
  });
});

/** A UDP client for the device namespace: sends `size` bytes, prints whether the echo matched. */
const UDP_ECHO_CLIENT = `
const dgram = require('node:dgram');
const [host, size] = [process.argv[1], Number(process.argv[2])];
const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
const payload = Buffer.alloc(size, 0x5a);
const timer = setTimeout(() => { console.log('timeout'); process.exit(1); }, 5000);
socket.on('message', (reply) => { clearTimeout(timer); console.log(reply.equals(payload) ? 'echoed ' + reply.length : 'mismatch'); socket.close(); });
socket.send(payload, 7, host);
`;

privilegedDescribe('device namespace with a 1280-byte TUN MTU: its kernel fragments, the edge reassembles', () => {
  const ns = useNetns('oxy-ipfrag');
  let edge: IpEdge;
  let onRamp: SeqpacketOnRamp;
  let device: Device;
  const path = `\0oxy-ip-frag-${process.pid}-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    edge = await IpEdge.create();
    onRamp = new SeqpacketOnRamp(edge, path);
    device = attachDevice(ns(), path, { tenant: 'frag-test', vnet: 'default' }, 1280);
  });
  /** What the device's kernel received from its TUN (what the edge sent). */
  function rxCounters(): { packets: number; bytes: number } {
    const [link] = JSON.parse(ns().ip('-s', '-j', 'link', 'show', 'oxdev0')) as { stats64: { rx: { packets: number; bytes: number } } }[];
    return link.stats64.rx;
  }
  afterAll(() => {
    device?.close();
    onRamp?.close();
    edge?.close();
  });

  for (const [family, target] of [
    ['-4', '198.18.2.2'],
    ['-6', '2001:db8:2::2'],
  ] as const) {
    it(`ping ${family} -s 3000 ${target} gets its replies: the TUN takes writes larger than its MTU`, async () => {
      const before = rxCounters();
      const result = await run(ns().spawn('ping', [family, '-c', '2', '-i', '0.2', '-W', '3', '-s', '3000', target]), 15_000);
      expect(result.stdout).toContain('2 received');
      expect(result.code).toBe(0);
      // The edge answers each reassembled request with one unfragmented reply (3028 / 3048 bytes),
      // and the device's kernel received both whole through its 1280-byte-MTU TUN.
      const after = rxCounters();
      const replyLength = family === '-4' ? 20 + 8 + 3000 : 40 + 8 + 3000;
      expect([after.packets - before.packets, after.bytes - before.bytes]).toEqual([2, 2 * replyLength]);
    });

    it(`a 4,000-byte UDP datagram to ${target}:7 comes back echoed`, async () => {
      const result = await run(ns().spawn('node', ['-e', UDP_ECHO_CLIENT, target, '4000']), 15_000);
      expect(result.stdout.trim()).toBe('echoed 4000');
    });
  }

  it('counted the fragments as reassembled datagrams, none dropped', () => {
    expect(edge.stats.reassembled).toBeGreaterThanOrEqual(6);
    expect(Object.keys(edge.stats.dropped).filter((k) => k.startsWith('fragment'))).toEqual([]);
  });
});
