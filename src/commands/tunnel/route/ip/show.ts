import { Flags } from '@oclif/core';
import { BaseCommand } from '../../../../cli/base-command.js';
import { outputFlag } from '../../../../cli/flags.js';
import { routeDocument, type RouteDocument } from '../../../../cli/documents.js';
import { listRoutes } from '../../../../core/routes.js';
import { renderRoutes } from '../../../../cli/routes-table.js';

export default class RouteIpShow extends BaseCommand<typeof RouteIpShow> {
  static summary = 'Show the routing table';
  static description = 'Shows the private routing table of every virtual network. The filter flags narrow it down.';
  static aliases = ['tunnel:route:ip:list'];
  static examples = ['<%= config.bin %> tunnel route ip show', '<%= config.bin %> tunnel route ip show --filter-vnet-id vnet-sydney --nsub 10.0.0.0/8 -o json'];
  static flags = {
    'filter-is-deleted': Flags.boolean({ description: 'If false (default), only show non-deleted routes. If true, only show deleted routes.' }),
    'filter-tunnel-id': Flags.string({ description: 'Show only routes with the given tunnel ID (or name).' }),
    'filter-vnet-id': Flags.string({ description: 'Show only routes in the given virtual network ID (or name).' }),
    'filter-comment-is': Flags.string({ description: 'Show only routes with this comment.' }),
    'filter-network-is-subset-of': Flags.string({ aliases: ['nsub'], description: 'Show only routes whose network is a subset of the given network (CIDR).' }),
    'filter-network-is-superset-of': Flags.string({
      aliases: ['nsup'],
      description: 'Show only routes whose network is a superset of the given network (CIDR).',
    }),
    output: outputFlag,
  };

  async run(): Promise<RouteDocument[]> {
    const f = this.flags;
    const docs = (
      await listRoutes(await this.store, {
        isDeleted: f['filter-is-deleted'],
        tunnel: f['filter-tunnel-id'],
        vnet: f['filter-vnet-id'],
        commentIs: f['filter-comment-is'],
        subsetOf: f['filter-network-is-subset-of'],
        supersetOf: f['filter-network-is-superset-of'],
      })
    ).map(routeDocument);
    await this.print(f.output, docs, () =>
      docs.length === 0 ? "No routes were found for the given filter flags. You can use 'oxyctl tunnel route ip add' to add a route.\n" : renderRoutes(docs),
    );
    return docs;
  }
}
