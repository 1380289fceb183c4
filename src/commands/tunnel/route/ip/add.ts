import { Args } from '@oclif/core';
import { BaseCommand } from '../../../../cli/base-command.js';
import { outputFlag, vnetFlag } from '../../../../cli/flags.js';
import { routeDocument, type RouteDocument } from '../../../../cli/documents.js';
import { addRoute } from '../../../../core/routes.js';

export default class RouteIpAdd extends BaseCommand<typeof RouteIpAdd> {
  static summary = 'Add a new network to the routing table reachable via a tunnel';
  static description =
    'Adds a private route from a CIDR in your private IP space to a tunnel, inside a virtual network (the default one ' +
    'without --vnet). Devices in that virtual network reach IPs in the CIDR through the tunnel. The same CIDR may be ' +
    'routed in several virtual networks, but only once in each.';
  static examples = [
    '<%= config.bin %> tunnel route ip add 10.1.0.0/16 tunnel-fra',
    '<%= config.bin %> tunnel route ip add --vnet vnet-sydney 10.1.0.0/16 tunnel-syd "APAC office"',
  ];
  static args = {
    network: Args.string({ description: 'CIDR of the network to route, e.g. 10.1.0.0/16 or 2001:db8::/48', required: true }),
    tunnel: Args.string({ description: 'ID or name of the tunnel', required: true }),
    comment: Args.string({ description: 'A comment describing the route' }),
  };
  static flags = { vnet: vnetFlag, output: outputFlag };

  async run(): Promise<RouteDocument> {
    const route = await addRoute(await this.store, { ...this.args, vnet: this.flags.vnet });
    const doc = routeDocument(route);
    await this.print(this.flags.output, doc, () => `Successfully added route for ${route.network} over tunnel ${route.tunnelId}\n`);
    return doc;
  }
}
