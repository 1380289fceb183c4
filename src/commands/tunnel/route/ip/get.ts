import { Args } from '@oclif/core';
import { BaseCommand } from '../../../../cli/base-command.js';
import { outputFlag, vnetFlag } from '../../../../cli/flags.js';
import { routeDocument, type RouteDocument } from '../../../../cli/documents.js';
import { getRouteForIp } from '../../../../core/routes.js';
import { renderRoutes } from '../../../../cli/routes-table.js';

export default class RouteIpGet extends BaseCommand<typeof RouteIpGet> {
  static summary = 'Check which row of the routing table matches a given IP';
  static description =
    'Shows the route that carries traffic to an IP in a virtual network (the default one without --vnet): the ' +
    'longest prefix that contains it. This is the same lookup the edge makes for every new flow.';
  static examples = ['<%= config.bin %> tunnel route ip get 10.1.2.3', '<%= config.bin %> tunnel route ip get --vnet vnet-sydney 10.1.2.3'];
  static args = { ip: Args.string({ description: 'An IPv4 or IPv6 address', required: true }) };
  static flags = { vnet: vnetFlag, output: outputFlag };

  async run(): Promise<RouteDocument | null> {
    const { ip, route } = await getRouteForIp(await this.store, this.args.ip, this.flags.vnet);
    const doc = route ? routeDocument(route) : null;
    await this.print(this.flags.output, doc, () => (doc ? renderRoutes([doc]) : `No route matches the IP ${ip}\n`));
    return doc;
  }
}
