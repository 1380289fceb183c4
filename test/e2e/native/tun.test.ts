// TUN in a fresh namespace: kernel → TUN (read a raw IPv4/UDP packet) and
// TUN → kernel (write one that a kernel socket receives), plain and with
// IFF_VNET_HDR. Packets are built by hand (packets.ts).
//
//   namespace: TUN oxytun0 with 198.18.5.1/24, route 198.18.6.0/24 → oxytun0
//   kernel socket 198.18.5.1:P  ⇄  (user space, "host" 198.18.6.7:9999)
import type dgram from 'node:dgram';
import { afterEach, expect, it } from 'vitest';

import {
  Tun,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_SIZE,
  readVirtioNetHeader,
  withNetns,
  writeVirtioNetHeader,
  type PacketBatch,
} from '../../../src/engine/native/index.js';
import { useNetns, type TestNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { buildUdp4, parseUdp4 } from './packets.js';
import { bindDgramSync } from './support.js';

const LOCAL = '198.18.5.1';
const REMOTE = '198.18.6.7';
const REMOTE_PORT = 9999;

/** Waits (bounded) for the first packet that `match` accepts; other traffic (IPv6 MLD, …) is skipped. */
function nextPacket(tun: Tun, match: (packet: Buffer) => boolean, ms = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      tun.off('packets', onPackets);
      reject(new Error(`no matching packet on ${tun.name} in ${ms} ms`));
    }, ms);
    const onPackets = (batch: PacketBatch) => {
      for (const packet of batch) {
        if (match(packet)) {
          clearTimeout(timer);
          tun.off('packets', onPackets);
          resolve(Buffer.from(packet));
          return;
        }
      }
    };
    tun.on('packets', onPackets);
  });
}

function received(socket: dgram.Socket, ms = 3000): Promise<{ msg: Buffer; rinfo: dgram.RemoteInfo }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kernel socket got nothing in ${ms} ms`)), ms);
    socket.once('message', (msg, rinfo) => {
      clearTimeout(timer);
      resolve({ msg, rinfo });
    });
  });
}

privilegedDescribe('Tun (network namespace)', () => {
  const ns = useNetns('oxy-tun');
  const closers: { close(): void }[] = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c.close();
  });

  /** TUN up with LOCAL/24 and a route for REMOTE's /24, plus a kernel UDP socket on LOCAL. */
  function setup(namespace: TestNetns, options: Parameters<typeof Tun.open>[0]): { tun: Tun; socket: dgram.Socket } {
    const tun = withNetns(namespace.path, () => Tun.open({ name: 'oxytun0', mtu: 1500, txQueueLength: 5000, up: true, ...options }));
    closers.push(tun);
    namespace.ipBatch([`addr add ${LOCAL}/24 dev oxytun0`, 'route add 198.18.6.0/24 dev oxytun0']);
    const socket = withNetns(namespace.path, () => bindDgramSync('udp4', LOCAL));
    closers.push(socket);
    return { tun, socket };
  }

  const isOurs = (offset: number) => (packet: Buffer) => parseUdp4(packet.subarray(offset))?.dstPort === REMOTE_PORT;

  it('reads a kernel datagram as a raw IPv4 packet and writes one the kernel delivers', async () => {
    const { tun, socket } = setup(ns(), {});
    expect(tun.name).toBe('oxytun0');
    expect(tun.ifIndex).toBeGreaterThan(0);
    expect(tun.getMtu()).toBe(1500);
    expect(ns().ip('-o', 'link', 'show', 'oxytun0')).toMatch(/qlen 5000/);

    const outgoing = nextPacket(tun, isOurs(0));
    socket.send(Buffer.from('hello tun'), REMOTE_PORT, REMOTE);
    const udp = parseUdp4(await outgoing)!;
    expect(udp).toMatchObject({ src: LOCAL, dst: REMOTE, srcPort: socket.address().port, dstPort: REMOTE_PORT });
    expect(udp.payload.toString()).toBe('hello tun');

    const incoming = received(socket);
    expect(tun.write(buildUdp4(REMOTE, REMOTE_PORT, LOCAL, socket.address().port, Buffer.from('hello kernel')))).toBe(true);
    const { msg, rinfo } = await incoming;
    expect(msg.toString()).toBe('hello kernel');
    expect(rinfo).toMatchObject({ address: REMOTE, port: REMOTE_PORT });
  });

  it('reads many packets per batch and writes a batch in one call', async () => {
    const { tun, socket } = setup(ns(), { batchSize: 256 });
    const seen = new Set<number>();
    let batches = 0;
    const all = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${seen.size} of 500 packets`)), 5000);
      tun.on('packets', (batch) => {
        batches++;
        for (const packet of batch) {
          const udp = parseUdp4(packet);
          if (udp?.dstPort === REMOTE_PORT) seen.add(udp.payload.readUInt32BE(0));
        }
        if (seen.size === 500) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    // Pause reading so the packets pile up in the TUN queue, then take them in batches.
    tun.pause();
    for (let i = 0; i < 500; i++) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(i);
      socket.send(b, REMOTE_PORT, REMOTE);
    }
    await new Promise((r) => setTimeout(r, 100));
    tun.resume();
    await all;
    expect(batches).toBeLessThan(50);

    let got = 0;
    const delivered = new Promise<void>((resolve) =>
      socket.on('message', () => {
        if (++got === 100) resolve();
      }),
    );
    const packets = Array.from({ length: 100 }, (_, i) => buildUdp4(REMOTE, REMOTE_PORT, LOCAL, socket.address().port, Buffer.from(`reply ${i}`)));
    expect(tun.writeBatch(packets)).toBe(100);
    await delivered;
  });

  it('with IFF_VNET_HDR every packet starts with a 10-byte virtio_net_hdr, both ways', async () => {
    const { tun, socket } = setup(ns(), { vnetHeader: true, offload: { checksum: true, tso4: true, tso6: true } });
    expect(tun.vnetHeader).toBe(true);

    const outgoing = nextPacket(tun, isOurs(VIRTIO_NET_HDR_SIZE));
    socket.send(Buffer.from('with header'), REMOTE_PORT, REMOTE);
    const packet = await outgoing;
    const header = readVirtioNetHeader(packet);
    const ip = packet.subarray(VIRTIO_NET_HDR_SIZE);
    expect(ip[0]! >> 4).toBe(4);
    expect(packet.length).toBe(VIRTIO_NET_HDR_SIZE + ip.readUInt16BE(2));
    expect(parseUdp4(ip)!.payload.toString()).toBe('with header');
    // Checksum offload: the kernel left the UDP checksum partial (start of UDP header, checksum field at +6).
    expect(header).toMatchObject({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: 0, csumStart: 20, csumOffset: 6 });

    const incoming = received(socket);
    const plain = buildUdp4(REMOTE, REMOTE_PORT, LOCAL, socket.address().port, Buffer.from('back with header'));
    const framed = Buffer.alloc(VIRTIO_NET_HDR_SIZE + plain.length);
    writeVirtioNetHeader(framed);
    plain.copy(framed, VIRTIO_NET_HDR_SIZE);
    tun.write(framed);
    expect((await incoming).msg.toString()).toBe('back with header');
  });

  it('lets the kernel choose the name, and the device goes away on close', () => {
    const tun = withNetns(ns().path, () => Tun.open());
    expect(tun.name).toMatch(/^tun\d+$/);
    expect(ns().ip('-o', 'link', 'show')).toContain(tun.name);
    tun.close();
    expect(ns().ip('-o', 'link', 'show')).not.toContain(`${tun.name}:`);
    expect(() => tun.write(Buffer.alloc(20))).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('reports ioctl failures with the call and errno name', () => {
    expect(() => withNetns(ns().path, () => Tun.open({ name: 'oxytun-bad', mtu: 10 }))).toThrow(
      expect.objectContaining({ code: 'EINVAL', syscall: 'ioctl(SIOCSIFMTU)' }),
    );
    expect(() => Tun.open({ name: 'x'.repeat(16) })).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'ioctl(TUNSETIFF)' }));
  });
});
