// The hand-off the unprivileged mode relies on: a process inside a namespace
// opens a UDP socket and a TUN there and sends both fds over a SEQPACKET socket;
// this process adopts them (fromFd) and uses them, and they still live in the
// namespace. The child uses the raw addon (no TypeScript in a child).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';

import { addonPath } from '../../../src/engine/native/binding.js';
import {
  PktinfoUdpSocket,
  SeqpacketServer,
  SeqpacketSocket,
  Tun,
  VIRTIO_NET_HDR_SIZE,
  dupFd,
  type PacketBatch,
  type UdpBatch,
} from '../../../src/engine/native/index.js';
import { useNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { parseUdp4 } from './packets.js';

const INSIDE = '198.18.12.1';
const ROUTED = '198.18.13.5';

function childScript(socketPath: string): string {
  return `
    const addon = require(${JSON.stringify(addonPath())});
    const channel = new addon.SeqpacketSocket(addon.seqpacketConnect(${JSON.stringify(socketPath)}), { maxMessageSize: 1024, batchSize: 8 });
    const udp = new addon.UdpSocket(4, { ipv6Only: false, reuseAddress: false, reusePort: false, batchSize: 8, maxDatagramSize: 2048, maxReadsPerWakeup: 1 });
    udp.bind('${INSIDE}', 0);
    const tun = new addon.TunDevice({ name: 'oxyho0', vnetHeader: true, offload: addon.TUN_F.CSUM, multiQueue: false, batchSize: 8, maxPacketSize: 65535 });
    tun.setUp(true);
    channel.send(Buffer.from('udp+tun'), [udp.fd, tun.fd]);
    // The message holds its own references to both; closing ours is safe.
    udp.close(); tun.close(); channel.close();
  `;
}

privilegedDescribe('fd hand-off from a process inside a namespace', () => {
  const ns = useNetns('oxy-handoff', (created) => created.ip('addr', 'add', `${INSIDE}/32`, 'dev', 'lo'));
  const dir = mkdtempSync(join(tmpdir(), 'oxy-handoff-'));
  const closers: { close(): void }[] = [];
  afterAll(() => {
    for (const c of closers) c.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('adopts a UDP socket and a TUN made in the namespace, and both work there', async () => {
    // Filesystem socket paths cross namespaces; abstract names would not.
    const path = join(dir, 'handoff.sock');
    const server = SeqpacketServer.listen(path);
    closers.push(server);
    const received = new Promise<readonly number[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('child sent nothing in 5 s')), 5000);
      server.once('connection', (channel: SeqpacketSocket) => {
        closers.push(channel);
        channel.once('message', (data, fds) => {
          clearTimeout(timer);
          expect(data.toString()).toBe('udp+tun');
          resolve(fds);
        });
      });
    });
    const child = ns().spawn(process.execPath, ['-e', childScript(path)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const fds = await received;
    expect(await exited, stderr).toBe(0);
    expect(fds).toHaveLength(2);

    const udp = PktinfoUdpSocket.fromFd(fds[0]!);
    const tun = Tun.fromFd(fds[1]!);
    closers.push(udp, tun);
    expect(udp.family).toBe(4);
    expect(udp.address().address).toBe(INSIDE);
    expect(tun).toMatchObject({ name: 'oxyho0', vnetHeader: true });
    expect(ns().ip('-o', 'link', 'show', 'oxyho0')).toContain('oxyho0');

    // The UDP socket routes in the namespace: it reaches its own address there ...
    const echo = new Promise<UdpBatch>((resolve) => udp.once('batch', resolve));
    udp.send(Buffer.from('to myself'), udp.address().port, INSIDE);
    expect((await echo).datagram(0)).toMatchObject({ sourceAddress: INSIDE, destinationAddress: INSIDE });

    // ... and, with a route into the TUN, its datagrams come out of the adopted TUN.
    ns().ip('route', 'add', '198.18.13.0/24', 'dev', 'oxyho0');
    const packet = new Promise<Buffer>((resolve) =>
      tun.on('packets', (batch: PacketBatch) => {
        for (const p of batch) if (parseUdp4(p.subarray(VIRTIO_NET_HDR_SIZE))?.dst === ROUTED) resolve(Buffer.from(p));
      }),
    );
    udp.send(Buffer.from('into the tun'), 7, ROUTED);
    const udp4 = parseUdp4((await packet).subarray(VIRTIO_NET_HDR_SIZE))!;
    expect(udp4).toMatchObject({ src: INSIDE, dst: ROUTED, dstPort: 7 });
    expect(udp4.payload.toString()).toBe('into the tun');
  });

  it('refuses fds of the wrong kind', () => {
    const udp = PktinfoUdpSocket.bind({ address: '127.0.0.1' });
    const [left, right] = SeqpacketSocket.pair();
    closers.push(udp, left!, right!);
    expect(() => Tun.fromFd(dupFd(udp.fd))).toThrow(expect.objectContaining({ syscall: 'ioctl(TUNGETIFF)' }));
    expect(() => PktinfoUdpSocket.fromFd(dupFd(left!.fd))).toThrow(expect.objectContaining({ code: 'ENOTSOCK' }));
  });
});
