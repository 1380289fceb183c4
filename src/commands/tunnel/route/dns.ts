import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../../cli/base-command.js';
import { outputFlag } from '../../../cli/flags.js';
import { routeDns } from '../../../core/hostnames.js';

export default class RouteDns extends BaseCommand<typeof RouteDns> {
  static summary = 'Route a hostname by creating a DNS CNAME record to a tunnel';
  static description =
    "Points a public hostname at a tunnel: the edge's HTTP listener sends requests whose Host is HOSTNAME (or matches a " +
    '*. wildcard) to a connector of that tunnel.';
  static examples = [
    '<%= config.bin %> tunnel route dns example app.example.com',
    '<%= config.bin %> tunnel route dns --overwrite-dns example "*.example.com"',
  ];
  static args = {
    tunnel: Args.string({ description: 'ID or name of the tunnel', required: true }),
    hostname: Args.string({ description: 'Public hostname, e.g. app.example.com or *.example.com', required: true }),
  };
  static flags = {
    'overwrite-dns': Flags.boolean({ char: 'f', description: 'Point the hostname at this tunnel even if it already points elsewhere.' }),
    output: outputFlag,
  };

  async run(): Promise<{ hostname: string; tunnel_id: string; tunnel_name: string }> {
    const { route, tunnelName, replacedTunnelId } = await routeDns(await this.store, {
      tunnel: this.args.tunnel,
      hostname: this.args.hostname,
      overwrite: this.flags['overwrite-dns'],
    });
    const doc = { hostname: route.hostname, tunnel_id: route.tunnelId, tunnel_name: tunnelName };
    await this.print(this.flags.output, doc, () =>
      replacedTunnelId
        ? `${route.hostname} was pointing to tunnel ${replacedTunnelId}, it has been overwritten to point to tunnel ${route.tunnelId} instead\n`
        : `Added CNAME ${route.hostname} which will route to this tunnel tunnelID=${route.tunnelId}\n`,
    );
    return doc;
  }
}
