/**
 * The upgraded sockets of a near client's flows (a device on this host, through the SEQPACKET
 * on-ramp) send with Reno, not the namespace's default congestion control (the host's: BBR here,
 * which paces each socket with a timer): their path is a TUN the edge drains as fast as the kernel
 * writes it, whichever accepts them (the addon, or Node with OXY_IP_NATIVE_ACCEPT=0).
 * OXY_IP_NEAR_RENO=0 leaves every flow on the default.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterEach, expect, it } from 'vitest';

import { withEnv } from '../../helpers/env.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { useNetns } from '../../helpers/netns.js';
import { until } from '../../helpers/until.js';
import { IpEdge, SeqpacketOnRamp } from '../../../src/engine/edge/ip/index.js';
import { socketFd, tcpCongestion } from '../../../src/engine/native/index.js';
import { attachDevice, ECHO_CLIENT, run, type Device } from './device.js';

privilegedDescribe("a near device's upgraded sockets", () => {
  const ns = useNetns('oxy-ncc');
  let close: (() => void) | undefined;
  afterEach(() => close?.());

  /** The congestion control of the upgraded socket of one echoed connection from the device. */
  async function upgradedCongestion(nativeAccept = true): Promise<string> {
    const seen: string[] = [];
    const edge = await IpEdge.create({
      upgrade: { nativeAccept },
      onTcpStream(socket) {
        seen.push(tcpCongestion(socketFd(socket) ?? -1));
        socket.on('error', () => socket.destroy());
        socket.pipe(socket);
      },
    });
    const path = `\0oxy-ncc-${process.pid}-${randomBytes(4).toString('hex')}`;
    const onRamp = new SeqpacketOnRamp(edge, path);
    const device: Device = attachDevice(ns(), path, { tenant: 'ncc', vnet: 'default' });
    close = () => {
      device.close();
      onRamp.close();
      edge.close();
      close = undefined;
    };
    const result = await run(ns().spawn(process.execPath, ['-e', ECHO_CLIENT, '198.18.2.2', '7301', String(64 * 1024)]), 20_000);
    expect(result.stderr).toBe('');
    await until(() => seen.length > 0, 5000, 'the upgraded socket');
    close();
    return seen[0]!;
  }

  it('send with Reno', async () => {
    expect(await upgradedCongestion()).toBe('reno');
  }, 30_000);

  it('send with Reno when Node accepts them too (OXY_IP_NATIVE_ACCEPT=0)', async () => {
    expect(await upgradedCongestion(false)).toBe('reno');
  }, 30_000);

  it("with OXY_IP_NEAR_RENO=0, with the namespace's default (the host's)", async () => {
    const hostDefault = readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim();
    expect(await withEnv({ OXY_IP_NEAR_RENO: '0' }, upgradedCongestion)).toBe(hostDefault);
  }, 30_000);
});
