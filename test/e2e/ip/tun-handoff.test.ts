/**
 * The device's TUN handed to the edge (warp's tunHandoff): a device whose context offers it and an
 * edge that answers `{"tunHandoff":true}` get the TUN's fd passed over the SEQPACKET on-ramp; the
 * edge then reads and writes that TUN itself (the device's relay stops) and the socket is only the
 * control channel. A real kernel TCP stream from the device crosses both ways byte-exact, IPv4 and
 * IPv6, mostly on the fast path, with the handoff and without it (either side's
 * OXY_IP_TUN_HANDOFF=0, or a device that does not offer it: an older one); the edge's close ends
 * the device's channel either way. A hostile device (test/fixtures/ip/hostile-tun-device.py) hands
 * over what is not such a TUN, and a TUN it then changes under the edge (O_NONBLOCK cleared,
 * another header size, TSO, a one-byte send buffer) with garbage through it, while a good device is served.
 *
 *   device namespace: TUN oxtho0 (198.18.1.1, 2001:db8:1::1) ⇄ (the edge, or warp's relay)
 *   ⇄ edge (upgrade TUN, fast NAT) → onTcpStream echoes
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { withEnv } from '../../helpers/env.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { useNetns } from '../../helpers/netns.js';
import { until } from '../../helpers/until.js';
import { type IpEdge, SeqpacketOnRamp } from '../../../src/engine/edge/ip/index.js';
import { relayChannel, type PacketChannel } from '../../../src/engine/device/warp.js';
import { createLogger } from '../../../src/engine/observe/log.js';
import { type Tun, seqpacketConnectFd } from '../../../src/engine/native/index.js';
import { echoEdge, expectFastEcho, openDeviceTun, run } from './device.js';

const cases = [
  { offered: true, edgeTakes: true, name: 'offered and taken' },
  { offered: true, edgeTakes: false, name: 'offered, the edge with OXY_IP_TUN_HANDOFF=0' },
  { offered: false, edgeTakes: true, name: 'not offered (a device without it)' },
];
for (const { offered, edgeTakes, name } of cases)
  privilegedDescribe(`The device's TUN handed to the edge (${name})`, () => {
    const ns = useNetns('oxy-tho');
    let edge: IpEdge;
    let onRamp: SeqpacketOnRamp;
    let tun: Tun;
    let channel: PacketChannel;
    const path = `\0oxy-tho-${process.pid}-${randomBytes(4).toString('hex')}`;

    beforeAll(async () => {
      edge = await echoEdge({ partialChecksums: true });
      onRamp = new SeqpacketOnRamp(edge, path);
      tun = openDeviceTun(ns(), 'oxtho0', { partialChecksums: true });
      const session = once(onRamp, 'session');
      await withEnv({ OXY_IP_TUN_HANDOFF: edgeTakes ? undefined : '0' }, async () => {
        const context = { tenant: 'tho', vnet: 'default', partialChecksums: true, partialSends: true, ...(offered ? { tunHandoff: true } : {}) };
        channel = relayChannel(tun, seqpacketConnectFd(path), context, createLogger({ level: 'silent' }));
        await session;
      });
      // The answer, the fd and the edge's `tunTaken` cross in a few turns; a packet relayed before
      // it is as good as one the edge reads, so nothing waits on it but the count below.
      if (offered && edgeTakes) await until(() => onRamp.stats.tunsTaken === 1, 5000, 'the edge taking the TUN');
    });
    afterAll(() => {
      channel?.close();
      tun?.close();
      onRamp?.close();
      edge?.close();
    });

    it.each([
      { family: 'IPv4', host: '198.18.2.2', port: 7201 },
      { family: 'IPv6', host: '2001:db8:2::2', port: 7202 },
    ])('$family: 16 MiB echoed byte-exact, the bulk on the fast path', ({ host, port }) => expectFastEcho(ns(), edge, host, port, 16 * 1024 * 1024), 40_000);

    it(`the edge ${offered && edgeTakes ? 'holds the TUN' : 'does not hold the TUN: the device relays it'}`, () => {
      expect(onRamp.stats.tunsTaken).toBe(offered && edgeTakes ? 1 : 0);
      expect(onRamp.stats.tunsRefused).toBe(0);
      // The fast path's TUN writes went to the kernel in batches, one io_uring_enter each, and the
      // handed-over TUN and the upgrade TUN were read in those calls (this file run with
      // OXY_IP_TUN_RING=0: one system call each, none that way; with OXY_IP_TUN_RING_READS=0 the
      // reads alone).
      const { tunRingWrites, tunRingEnters, tunRingReads, tunRingUpgradeReads } = edge.upgrader.fastNat.totals;
      if (process.env.OXY_IP_TUN_RING === '0') expect([tunRingWrites, tunRingEnters, tunRingReads, tunRingUpgradeReads]).toEqual([0, 0, 0, 0]);
      else {
        expect(tunRingEnters).toBeGreaterThan(0);
        expect(tunRingWrites).toBeGreaterThan(0);
        const readsOff = process.env.OXY_IP_TUN_RING_READS === '0';
        if (readsOff) expect([tunRingReads, tunRingUpgradeReads]).toEqual([0, 0]);
        else {
          if (offered && edgeTakes) expect(tunRingReads).toBeGreaterThan(0);
          expect(tunRingUpgradeReads).toBeGreaterThan(0);
        }
      }
    });

    it("the edge's close ends the device's channel", async () => {
      onRamp.close();
      await expect(channel.ended).resolves.toBeUndefined();
    });
  });

privilegedDescribe('The TUN handoff under a hostile device, while a good one is served', () => {
  const good = useNetns('oxy-thg');
  const bad = useNetns('oxy-thb');
  let edge: IpEdge;
  let onRamp: SeqpacketOnRamp;
  let tun: Tun;
  let channel: PacketChannel;
  const dir = mkdtempSync(join(tmpdir(), 'oxy-tho-'));
  const path = join(dir, 'ip.sock');

  beforeAll(async () => {
    edge = await echoEdge({ partialChecksums: true });
    onRamp = new SeqpacketOnRamp(edge, path);
    tun = openDeviceTun(good(), 'oxtho0', { partialChecksums: true, ipv6: false });
    const context = { tenant: 'tho', vnet: 'default', partialChecksums: true, partialSends: true, tunHandoff: true };
    channel = relayChannel(tun, seqpacketConnectFd(path), context, createLogger({ level: 'silent' }));
    await until(() => onRamp.stats.tunsTaken === 1, 5000, 'the edge taking the good TUN');
  });
  afterAll(() => {
    channel?.close();
    tun?.close();
    onRamp?.close();
    edge?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses what is not the TUN it takes, survives one changed under it, and serves the good device meanwhile', async () => {
    const child = bad().spawn('python3', [fileURLToPath(new URL('../../fixtures/ip/hostile-tun-device.py', import.meta.url)), path, '4']);
    let printed = '';
    child.stdout!.on('data', (chunk: Buffer) => (printed += chunk.toString()));
    const hostile = run(child, 60_000);
    const echo = (port: number) => expectFastEcho(good(), edge, '198.18.2.2', port, 8 * 1024 * 1024);
    // While the hostile device floods the TUN it changed under the edge.
    await until(() => printed.includes('"good"'), 20_000, 'the hostile device handing over its TUN');
    await echo(7211);
    const result = await hostile;
    expect(result.stderr).toBe('');
    const lines = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { what: string; answer?: { tunRefused?: string; tunTaken?: boolean } });
    // A TUN with packet information may pass: TUNGETIFF says IFF_NO_PI of every TUN on some kernels
    // (6.18 here). Its packets are then garbage to the edge, dropped as such.
    const refusedOnes = lines.filter((l) => l.answer?.tunRefused !== undefined).map((l) => l.what);
    expect(refusedOnes.filter((what) => what !== 'pi')).toEqual(['pipe', 'socket', 'file', '/dev/null', 'unattached', 'tap', 'no-vnet', 'header-12']);
    const piTaken = lines.find((l) => l.what === 'pi')?.answer?.tunTaken === true;
    expect(lines.find((l) => l.what === 'tap')?.answer?.tunRefused).toMatch(/IFF_TUN\|IFF_NO_PI\|IFF_VNET_HDR/);
    expect(lines.find((l) => l.what === 'pipe')?.answer?.tunRefused).toMatch(/not a TUN/);
    expect(lines.find((l) => l.what === 'good')?.answer).toEqual({ tunTaken: true });
    expect(lines.at(-1)?.what).toBe('done');
    expect(onRamp.stats.tunsRefused).toBe(refusedOnes.length);
    expect(onRamp.stats.tunsTaken).toBe(piTaken ? 3 : 2);
    // The good device, after all that.
    await echo(7212);
  }, 90_000);
});
