// setns(CLONE_NEWNET) on the main thread: what is created inside stays inside,
// and the thread comes back to its own namespace — also when things go wrong.
import { networkInterfaces } from 'node:os';
import { expect, it } from 'vitest';

import { PktinfoUdpSocket, closeFd, currentNetns, openNetns, setns, withNetns, type UdpBatch } from '../../../src/engine/native/index.js';
import { useNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { currentNetnsInode } from './support.js';

const ONLY_THERE = '198.18.9.1';

privilegedDescribe('setns / withNetns', () => {
  const ns = useNetns('oxy-setns', (created) => {
    // On lo: this kernel has no dummy module, and lo needs no peer.
    created.ip('addr', 'add', `${ONLY_THERE}/32`, 'dev', 'lo');
  });

  it('a socket created inside lives there: binds an address only that namespace has, and talks to itself', async () => {
    const here = Object.values(networkInterfaces()).flatMap((list) => list ?? []);
    expect(here.map((i) => i.address)).not.toContain(ONLY_THERE);
    expect(() => PktinfoUdpSocket.bind({ address: ONLY_THERE })).toThrow(expect.objectContaining({ code: 'EADDRNOTAVAIL', syscall: 'bind' }));

    const home = currentNetnsInode();
    const socket = withNetns(ns().path, () => PktinfoUdpSocket.bind({ address: ONLY_THERE }));
    expect(currentNetnsInode()).toBe(home);
    try {
      // Used from the home namespace, the socket still routes in its own.
      const got = new Promise<UdpBatch>((resolve) => socket.once('batch', resolve));
      socket.send(Buffer.from('echo'), socket.address().port, ONLY_THERE);
      const batch = await got;
      expect(batch.datagram(0)).toMatchObject({ sourceAddress: ONLY_THERE, destinationAddress: ONLY_THERE });
      expect(batch.payload(0).toString()).toBe('echo');
    } finally {
      socket.close();
    }
  });

  it('setns/currentNetns/openNetns by hand, by name and by /proc path', () => {
    const home = currentNetnsInode();
    const homeFd = currentNetns();
    const targetFd = openNetns(ns().name);
    try {
      setns(targetFd);
      const inside = currentNetnsInode();
      expect(inside).not.toBe(home);
      PktinfoUdpSocket.bind({ address: ONLY_THERE }).close();
      setns(homeFd);
      expect(currentNetnsInode()).toBe(home);

      // /proc/PID/ns/net works the same way (here: our own, i.e. a no-op switch).
      const self = openNetns(`/proc/${process.pid}/ns/net`);
      withNetns(self, () => expect(currentNetnsInode()).toBe(home));
      closeFd(self);
    } finally {
      setns(homeFd);
      closeFd(homeFd);
      closeFd(targetFd);
    }
  });

  it('switches back when the function throws or returns a promise', async () => {
    const home = currentNetnsInode();
    expect(() =>
      withNetns(ns().path, () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(currentNetnsInode()).toBe(home);

    expect(() => withNetns(ns().path, async () => 1)).toThrow(expect.objectContaining({ code: 'OXY_ERR_NETNS_ASYNC' }));
    expect(currentNetnsInode()).toBe(home);
  });

  it('names the failing call for a missing namespace', () => {
    expect(() => openNetns('oxy-no-such-namespace')).toThrow(
      expect.objectContaining({ code: 'ENOENT', syscall: 'open', message: expect.stringContaining('/var/run/netns/oxy-no-such-namespace') }),
    );
    expect(() => setns(123456)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'setns' }));
  });
});
