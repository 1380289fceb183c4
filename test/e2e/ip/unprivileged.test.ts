import { createHash, randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import type net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { privilegedDescribe } from '../../helpers/privileged.js';
import { IpEdge, SeqpacketOnRamp } from '../../../src/engine/edge/ip/index.js';
import { TcpDowngrader, UnnamedNetns } from '../../../src/engine/netns/index.js';
import { SeqpacketSocket } from '../../../src/engine/native/index.js';

/**
 * The path without root: both namespaces live in user namespaces of their own, so this
 * process cannot setns into them; the children open the TUNs and bind the listeners and
 * hand them over (SCM_RIGHTS, Node IPC). Forced here while running as root: a real
 * non-root user also needs read/write on /dev/net/tun, which is 0600 on these machines.
 */
privilegedDescribe('IP upgrade with unprivileged (user-namespace) namespaces', () => {
  let edgeNs: UnnamedNetns;
  let downNs: UnnamedNetns;
  let edge: IpEdge;
  let downgrader: TcpDowngrader;
  let onRamp: SeqpacketOnRamp;
  const path = `\0oxy-unpriv-${process.pid}-${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    edgeNs = await UnnamedNetns.create({ unprivileged: true });
    downNs = await UnnamedNetns.create({ unprivileged: true });
    edge = await IpEdge.create({ ns: edgeNs });
    downgrader = await TcpDowngrader.create({ ns: downNs, timeouts: { tcpCloseLingerMs: 200 } });
    onRamp = new SeqpacketOnRamp(edge, path);
  });
  afterAll(() => {
    onRamp?.close();
    downgrader?.close();
    edge?.close();
    edgeNs?.close();
    downNs?.close();
  });

  it('lives in its own user namespace, with no namespace fd in this process', () => {
    expect(edgeNs.unprivileged).toBe(true);
    const child = edgeNs.path.match(/^\/proc\/(\d+)\/ns\/net$/)?.[1];
    expect(child).toBeDefined();
    expect(readlinkSync(`/proc/${child}/ns/user`)).not.toBe(readlinkSync('/proc/self/ns/user'));
    expect(() => edgeNs.netnsFd).toThrow(/no fd/);
  });

  it('upgrades TCP through the TUN it was handed: echo and 10 MB with matching sha256', async () => {
    const socket = SeqpacketSocket.connect(path);
    socket.send(Buffer.from(JSON.stringify({ tenant: 'acme', vnet: 'default' })));
    const session = downgrader.session({ tenant: 'acme', vnet: 'default' }, (packet) => socket.send(packet));
    socket.on('message', (packet) => session.receive(packet));
    try {
      const stream: net.Socket = await session.connect({ src: '198.18.1.1', srcPort: 41001, dst: '198.18.2.2', dstPort: 9000 });
      const block = randomBytes(1024 * 1024);
      const sent = createHash('sha256');
      const got = createHash('sha256');
      let received = 0;
      const done = new Promise<void>((resolve, reject) => {
        stream.on('data', (d: Buffer) => {
          got.update(d);
          received += d.length;
        });
        stream.once('end', resolve);
        stream.once('error', reject);
      });
      for (let i = 0; i < 10; i++) {
        sent.update(block);
        if (!stream.write(block)) await new Promise((r) => stream.once('drain', r));
      }
      stream.end();
      await done;
      expect(received).toBe(10 * 1024 * 1024);
      expect(got.digest('hex')).toBe(sent.digest('hex'));
    } finally {
      session.close();
      socket.close();
    }
  });
});
