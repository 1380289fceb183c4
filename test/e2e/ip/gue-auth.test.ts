/**
 * GUE is authenticated: a site elsewhere (the data-centre namespace here) sends GUE to the
 * edge's non-loopback address with an enrolled device's key and reaches a private host
 * behind the tunnel; datagrams in the old unauthenticated format, with a wrong or unknown
 * key, a flipped bit, a replayed counter, a stale clock, another tenant or a vnet that does
 * not exist are dropped and counted by reason (oxy_edge_gue_dropped_total) while the good
 * sender keeps being served. And an edge refuses to open GUE on a non-loopback address
 * when no device could use it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxy, oxyOk, tempHome } from '../../helpers/cli.js';
import { GueSender } from '../../helpers/gue-sender.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { SITE_METRICS_PORT, startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';

privilegedDescribe('GUE on-ramp authentication (device keys, replay window, tenant and vnet)', () => {
  let site: VnetSite;
  let sender: GueSender;
  let device: { device: string; secret: string };

  const dropped = (): Record<string, number> => {
    const text = site.edgeNs.exec('curl', ['-s', `http://127.0.0.1:${SITE_METRICS_PORT}/metrics`]);
    const counts: Record<string, number> = {};
    for (const m of text.matchAll(/^oxy_edge_gue_dropped_total\{reason="([^"]+)"\} (\d+)/gm)) counts[m[1]!] = Number(m[2]);
    return counts;
  };

  beforeAll(async () => {
    site = await startVnetSite({
      edgeArgs: ['--gue-listen', '198.18.1.1:6080'],
      beforeEdge: async (home) => {
        const printed = await oxyOk(home, ['warp', 'enroll', 'branch-office']);
        const token = JSON.parse(Buffer.from(printed.trim(), 'base64').toString()) as { d: string; s: string };
        device = { device: token.d, secret: token.s };
      },
    });
    await site.edge.waitFor(/IP tunnel on-ramp ready \(GUE\)/);
    const echo = site.spawnIn(site.dc, process.execPath, [
      '-e',
      `const u = require('dgram').createSocket('udp4');
       u.on('message', (m, r) => u.send(Buffer.concat([Buffer.from('host:'), m]), r.port, r.address));
       u.bind(5353, '198.18.0.10', () => console.log('echo ready'));`,
    ]);
    await echo.waitFor(/echo ready/);
    sender = GueSender.start(site.dc, '198.18.1.1', 6080);
  });

  afterAll(async () => {
    await sender?.stop();
    await site?.close();
  });

  it('an enrolled key reaches the private host; every forged, replayed or misdirected datagram is dropped and counted', async () => {
    const good = (payload: string) => sender.do<{ reply: string | null }>({ op: 'request', ...device, vnet: 'site', payload });
    expect((await good('hello-1')).reply).toBe('host:hello-1');

    const hostile = ['v1', 'wrong-key', 'unknown-key', 'bad-mac', 'replay', 'stale', 'wrong-tenant', 'wrong-vnet'] as const;
    for (let round = 0; round < 3; round++) {
      for (const kind of hostile) await sender.do({ op: 'send', kind, ...device, vnet: 'site', payload: `evil-${kind}-${round}` });
      // The good sender is served between the attacks.
      expect((await good(`hello-${round + 2}`)).reply).toBe(`host:hello-${round + 2}`);
    }
    const want = { unauthenticated: 3, 'unknown-key': 3, 'bad-mac': 6, replayed: 3, stale: 3, 'wrong-tenant': 3, 'wrong-vnet': 3 };
    await expect.poll(dropped, { timeout: 5000 }).toEqual(expect.objectContaining(want));
    const { replies, forged } = await sender.do<{ replies: string[]; forged: number }>({ op: 'replies' });
    // Nothing hostile reached the host, each good request was answered once (the replay was not).
    expect(replies.filter((r) => r.includes('evil'))).toEqual([]);
    expect(replies.sort()).toEqual(['host:hello-1', 'host:hello-2', 'host:hello-3', 'host:hello-4']);
    expect(forged).toBe(0);
    // The first drop of each reason is logged with what to do.
    await site.edge.waitFor(/GUE datagram refused .*reason=unauthenticated .*warp enroll/);
    await site.edge.waitFor(/GUE datagram refused .*reason=replayed/);
  });

  it('a revoked device is refused at the next store reload', async () => {
    expect((await sender.do<{ reply: string | null }>({ op: 'request', ...device, vnet: 'site', payload: 'before-revoke' })).reply).toBe('host:before-revoke');
    const before = dropped()['unknown-key'] ?? 0;
    const r = await oxy(site.home, ['warp', 'revoke', '--yes', 'branch-office']);
    expect(r.code).toBe(0);
    // The edge picks the change up at its next store poll; from then on the key is unknown.
    let n = 0;
    await expect
      .poll(
        async () => {
          await sender.do({ op: 'request', ...device, vnet: 'site', payload: `after-revoke-${n++}`, timeoutMs: 200 });
          return (dropped()['unknown-key'] ?? 0) > before;
        },
        { timeout: 10_000 },
      )
      .toBe(true);
    expect((await sender.do<{ reply: string | null }>({ op: 'request', ...device, vnet: 'site', payload: 'still-revoked', timeoutMs: 1000 })).reply).toBeNull();
  });
});

describe('GUE on a public address needs an enrolled device', () => {
  it('refuses to start with a clear error, before listening on anything', async () => {
    const { home, cleanup } = tempHome();
    try {
      const r = await oxy(home, ['edge', 'run', '--tunnel-listen', '127.0.0.1:0', '--gue-listen', '0.0.0.0:0']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/GUE on 0\.0\.0\.0:0 would accept no sender: no device is enrolled\. Enroll one first \(oxyctl warp enroll NAME\)/);
    } finally {
      cleanup();
    }
  });
});
