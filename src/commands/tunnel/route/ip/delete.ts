import { Args } from '@oclif/core';
import { BaseCommand } from '../../../../cli/base-command.js';
import { outputFlag, vnetFlag, yesFlag } from '../../../../cli/flags.js';
import { confirmDestructive } from '../../../../cli/confirm.js';
import { routeDocument, type RouteDocument } from '../../../../cli/documents.js';
import { deleteRoute } from '../../../../core/routes.js';

export default class RouteIpDelete extends BaseCommand<typeof RouteIpDelete> {
  static summary = "Delete a row from your organization's private routing table";
  static description = 'Deletes a route given its ID, or given its CIDR in a virtual network (the default one without --vnet).';
  static examples = [
    '<%= config.bin %> tunnel route ip delete --yes 10.1.0.0/16',
    '<%= config.bin %> tunnel route ip delete --yes --vnet vnet-sydney 10.1.0.0/16',
  ];
  static args = { route: Args.string({ description: 'ID or CIDR of the route', required: true }) };
  static flags = { vnet: vnetFlag, yes: yesFlag, output: outputFlag };

  async run(): Promise<RouteDocument> {
    await confirmDestructive(`Delete the route ${this.args.route}?`, this.flags.yes);
    const doc = routeDocument(await deleteRoute(await this.store, this.args.route, this.flags.vnet));
    await this.print(this.flags.output, doc, () => `Successfully deleted route with ID ${doc.id}\n`);
    return doc;
  }
}
