/**
 * cloudflared's --icmpv4-src / --icmpv6-src: the connector re-originates a device's ping from
 * its own raw ICMP socket, and these flags choose that socket's source address. Checked where
 * the echo lands: nftables counters in the data centre's namespace count the echo requests
 * by source, and the device's ping is answered through the tunnel.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { oxyOk } from '../../helpers/cli.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';

const SRC4 = '198.18.0.33';
const SRC6 = '2001:db8:5::33';
const HOST6 = '2001:db8:5::10';

privilegedDescribe('--icmpv4-src / --icmpv6-src choose the source of the pings the connector sends', () => {
  let site: VnetSite;
  /** Echo requests that reached the data centre's input hook: from the given source, and in all. */
  const counters = (): Record<string, number> => {
    const out = JSON.parse(site.dc.exec('nft', ['-j', 'list', 'counters', 'table', 'inet', 'oxyicmp'])) as {
      nftables: { counter?: { name: string; packets: number } }[];
    };
    return Object.fromEntries(out.nftables.filter((x) => x.counter).map((x) => [x.counter!.name, x.counter!.packets]));
  };
  const ping = async (args: string[]) => (await site.inDevice('ping', ['-c', '1', '-W', '2', ...args])).code === 0;

  beforeAll(async () => {
    site = await startVnetSite({ connectorArgs: ['--icmpv4-src', SRC4, '--icmpv6-src', SRC6], deviceRoutes: ['2001:db8:5::/64'] });
    // The sources are the data centre host's own addresses; 198.18.0.10 and HOST6 are the pinged hosts.
    site.dc.ipBatch([`addr add ${SRC4}/32 dev lo`, `addr add ${SRC6}/128 dev lo nodad`, `addr add ${HOST6}/128 dev lo nodad`]);
    const rules = join(site.home, 'icmp.nft');
    writeFileSync(
      rules,
      `table inet oxyicmp {
  counter v4src {}
  counter v4all {}
  counter v6src {}
  counter v6all {}
  chain input {
    type filter hook input priority 0;
    ip daddr 198.18.0.10 icmp type echo-request ip saddr ${SRC4} counter name v4src
    ip daddr 198.18.0.10 icmp type echo-request counter name v4all
    ip6 daddr ${HOST6} icmpv6 type echo-request ip6 saddr ${SRC6} counter name v6src
    ip6 daddr ${HOST6} icmpv6 type echo-request counter name v6all
  }
}
`,
    );
    site.dc.exec('nft', ['-f', rules]);
    await oxyOk(site.home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'site', '2001:db8:5::/64', 'site']);
  });
  afterAll(async () => {
    await site?.close();
  });

  it('IPv4 and IPv6 echo requests leave from the given addresses, and the device gets the replies', async () => {
    expect(await ping(['198.18.0.10'])).toBe(true);
    // The route added while running reaches the edge and the connector: poll until the ping is answered.
    await expect.poll(() => ping(['-6', HOST6]), { timeout: 15_000, interval: 200 }).toBe(true);
    const c = counters();
    expect(c.v4all).toBeGreaterThanOrEqual(1);
    expect(c.v4src).toBe(c.v4all);
    expect(c.v6all).toBeGreaterThanOrEqual(1);
    expect(c.v6src).toBe(c.v6all);
  }, 40_000);
});
