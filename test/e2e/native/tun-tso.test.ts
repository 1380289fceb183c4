// TSO through a TUN with IFF_VNET_HDR: a kernel TCP sender hands the TUN
// super-packets larger than the MTU, with gso_type TCPV4 and gso_size = MSS,
// instead of MTU-sized segments (the reason the edge's TUN path reaches Gbit/s).
//
// The test is the TCP peer in user space: it answers the kernel's SYN with a
// SYN-ACK written into the TUN, then reads the data the kernel sends.
//
//   namespace: TUN oxytso0 198.18.7.1/24, route 198.18.8.0/24 → oxytso0
//   child `node` in the namespace: connect 198.18.8.9:80, write 64 KiB
import type { ChildProcess } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';

import {
  Tun,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_SIZE,
  readVirtioNetHeader,
  withNetns,
  writeVirtioNetHeader,
  type PacketBatch,
} from '../../../src/engine/native/index.js';
import { useNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { TCP_ACK, TCP_SYN, buildTcp4, parseTcp4, type Tcp4 } from './packets.js';

const LOCAL = '198.18.7.1';
const REMOTE = '198.18.8.9';
const MSS = 1460;

privilegedDescribe('Tun TSO (network namespace)', () => {
  const ns = useNetns('oxy-tso');
  let child: ChildProcess | undefined;
  let tun: Tun | undefined;
  afterEach(() => {
    child?.kill('SIGKILL');
    tun?.close();
  });

  it('hands over TCP super-packets with gso_type TCPV4 and gso_size = MSS', async () => {
    tun = withNetns(ns().path, () => Tun.open({ name: 'oxytso0', vnetHeader: true, offload: { checksum: true, tso4: true, tso6: true }, mtu: 1500, up: true }));
    ns().ipBatch([`addr add ${LOCAL}/24 dev oxytso0`, 'route add 198.18.8.0/24 dev oxytso0']);

    const device = tun;
    const result = new Promise<{ largest: Buffer; segments: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no TCP data through the TUN in 5 s')), 5000);
      let largest: Buffer | undefined;
      let bytes = 0;
      let segments = 0;
      device.on('packets', (batch: PacketBatch) => {
        for (const framed of batch) {
          const tcp = parseTcp4(framed.subarray(VIRTIO_NET_HDR_SIZE));
          if (!tcp || tcp.dst !== REMOTE) continue;
          if (tcp.flags & TCP_SYN) {
            device.write(synAck(tcp));
            continue;
          }
          if (tcp.payloadLength === 0) continue;
          segments++;
          bytes += tcp.payloadLength;
          if (!largest || framed.length > largest.length) largest = Buffer.from(framed);
          // The first flight (initial cwnd, ~10 MSS) is enough; nothing is ACKed.
          if (bytes >= 4 * MSS) {
            clearTimeout(timer);
            resolve({ largest, segments });
          }
        }
      });
    });

    child = ns().spawn(
      process.execPath,
      ['-e', `const s = require('net').connect(80, '${REMOTE}', () => s.write(Buffer.alloc(65536, 0x61))); s.on('error', () => {});`],
      { stdio: 'ignore' },
    );
    const { largest, segments } = await result;

    const header = readVirtioNetHeader(largest);
    const tcp = parseTcp4(largest.subarray(VIRTIO_NET_HDR_SIZE))!;
    expect(tcp.payloadLength).toBeGreaterThan(MSS);
    expect(largest.length - VIRTIO_NET_HDR_SIZE).toBeGreaterThan(1500);
    expect(header).toMatchObject({
      flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
      gsoType: VIRTIO_NET_HDR_GSO_TCPV4,
      gsoSize: MSS,
      csumStart: 20,
      csumOffset: 16,
    });
    expect(segments).toBeLessThan(10);
  });
});

/** SYN-ACK from REMOTE, advertising MSS 1460, behind a zero virtio header. */
function synAck(syn: Tcp4): Buffer {
  const ip = buildTcp4(REMOTE, syn.dstPort, syn.src, syn.srcPort, {
    seq: 1000,
    ack: syn.seq + 1,
    flags: TCP_SYN | TCP_ACK,
    mss: MSS,
  });
  const framed = Buffer.alloc(VIRTIO_NET_HDR_SIZE + ip.length);
  writeVirtioNetHeader(framed);
  ip.copy(framed, VIRTIO_NET_HDR_SIZE);
  return framed;
}
