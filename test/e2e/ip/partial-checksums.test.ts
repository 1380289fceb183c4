/**
 * TCP packets written to a TUN as CHECKSUM_PARTIAL (TunOptions.partialChecksums): the edge's fast
 * NAT into its upgrade TUN, and the device's relay into the device's TUN (what `warp connect`
 * runs), so neither namespace's TCP sums each segment again; and the edge's kernel leaving what it
 * writes to its TUN partially summed, passed so to a device whose context says partialChecksums
 * and summed by the addon for one that does not. The other way, a device whose context says
 * partialSends and which the edge answers `{"partialSends":true}` turns its TUN's checksum offload
 * on (PacketRelay.sendPartial): its kernel leaves the checksums of its TCP segments partial and
 * the edge sums those that leave the fast path (the SYNs JS reads; every packet where the edge's
 * TUN takes whole checksums only). In each case a real kernel TCP stream from the device crosses
 * both ways byte-exact, IPv4 and IPv6, mostly on the fast path.
 *
 *   device namespace: TUN oxpcs0 (198.18.1.1, 2001:db8:1::1) ⇄ PacketRelay ⇄ SEQPACKET on-ramp
 *   ⇄ edge (upgrade TUN, fast NAT) → onTcpStream echoes
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { withEnv } from '../../helpers/env.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { useNetns } from '../../helpers/netns.js';
import { until } from '../../helpers/until.js';
import { type IpEdge, SeqpacketOnRamp } from '../../../src/engine/edge/ip/index.js';
import { PacketRelay, type Tun, seqpacketConnectFd } from '../../../src/engine/native/index.js';
import { echoEdge, expectFastEcho, openDeviceTun } from './device.js';

// edge: the edge's upgrade TUN (partialChecksums); sends: the device offers partialSends; taken:
// the edge takes them up (OXY_IP_PARTIAL_SENDS unset, or =0).
const cases = [
  { partialChecksums: true, declared: true, sends: true, taken: true, edge: true, name: 'on, the device takes partial sums and sends them' },
  { partialChecksums: true, declared: true, sends: true, taken: true, edge: false, name: "on, the device sends partial sums, the edge's TUN takes whole ones" },
  { partialChecksums: true, declared: true, sends: true, taken: false, edge: true, name: 'on, the edge with OXY_IP_PARTIAL_SENDS=0' },
  { partialChecksums: true, declared: true, sends: false, taken: false, edge: true, name: 'on, and the device takes partial sums' },
  { partialChecksums: true, declared: false, sends: false, taken: false, edge: true, name: 'on, the device does not say it takes partial sums' },
  { partialChecksums: false, declared: false, sends: false, taken: false, edge: false, name: 'off' },
];
for (const { partialChecksums, declared, sends, taken, edge: edgePartial, name } of cases)
  privilegedDescribe(`TCP through the device relay and the edge's fast NAT (partialChecksums ${name})`, () => {
    const ns = useNetns('oxy-pcs');
    let edge: IpEdge;
    let onRamp: SeqpacketOnRamp;
    let tun: Tun;
    let relay: PacketRelay;
    const answers: unknown[] = [];
    const path = `\0oxy-pcs-${process.pid}-${randomBytes(4).toString('hex')}`;

    beforeAll(async () => {
      edge = await echoEdge({ partialChecksums: edgePartial });
      onRamp = new SeqpacketOnRamp(edge, path);
      tun = openDeviceTun(ns(), 'oxpcs0', { partialChecksums });
      const session = once(onRamp, 'session');
      await withEnv({ OXY_IP_PARTIAL_SENDS: taken ? undefined : '0' }, async () => {
        relay = PacketRelay.attach(tun, seqpacketConnectFd(path), {
          first: Buffer.from(
            JSON.stringify({ tenant: 'pcs', vnet: 'default', ...(declared ? { partialChecksums: true } : {}), ...(sends ? { partialSends: true } : {}) }),
          ),
        });
        relay.on('error', () => undefined);
        // As warp's relay channel: the edge's answer turns the TUN's checksum offload on.
        relay.on('message', (data: Buffer) => {
          const answer = JSON.parse(data.toString('utf8')) as { partialSends?: boolean };
          answers.push(answer);
          if (answer.partialSends === true) relay.sendPartial();
        });
        // The edge reads the context (and answers it) before the session event.
        await session;
      });
      if (taken) await until(() => relay.stats.partialSends, 5000, "the relay's sendPartial()");
    });
    afterAll(() => {
      relay?.close();
      tun?.close();
      onRamp?.close();
      edge?.close();
    });

    it.each([
      { family: 'IPv4', host: '198.18.2.2', port: 7101 },
      { family: 'IPv6', host: '2001:db8:2::2', port: 7102 },
    ])('$family: 16 MiB echoed byte-exact, the bulk on the fast path', ({ host, port }) => expectFastEcho(ns(), edge, host, port, 16 * 1024 * 1024), 40_000);

    it(`the edge answers partialSends ${taken ? 'and the relay sends partial sums' : 'not: the relay sends whole sums'}`, () => {
      expect(answers).toEqual(taken ? [{ partialSends: true }] : []);
      expect(relay.stats.partialSends).toBe(taken);
    });

    it("JS sees bare packets either way: the TUN's virtio header stays in the addon", () => {
      expect(tun.vnetHeader).toBe(false);
    });
  });
