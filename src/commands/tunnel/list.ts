import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { renderTable } from '../../cli/output.js';
import { connectionsCell, tunnelDocument, type TunnelDocument } from '../../cli/documents.js';
import { listTunnels, TUNNEL_SORT_KEYS } from '../../core/tunnels.js';

export default class TunnelList extends BaseCommand<typeof TunnelList> {
  static summary = 'List existing tunnels';
  static description =
    'Lists the tunnels, their creation time and their live connections per edge location. ' +
    'Use --show-deleted to include deleted tunnels and the filters to narrow the list.';
  static examples = ['<%= config.bin %> tunnel list', '<%= config.bin %> tunnel list --name-prefix prod- --sort-by numConnections --invert-sort'];
  static flags = {
    output: outputFlag,
    'show-deleted': Flags.boolean({ char: 'd', description: 'Include deleted tunnels in the list' }),
    name: Flags.string({ char: 'n', description: 'List tunnels with the given NAME' }),
    'name-prefix': Flags.string({ aliases: ['np'], description: 'List tunnels that start with the given NAME prefix' }),
    'exclude-name-prefix': Flags.string({ aliases: ['enp'], description: 'List tunnels whose NAME does not start with the given prefix' }),
    id: Flags.string({ char: 'i', description: 'List tunnel by ID' }),
    'sort-by': Flags.option({ options: TUNNEL_SORT_KEYS, default: 'name', description: 'Sorts the list of tunnels by the given field' })(),
    'invert-sort': Flags.boolean({ description: 'Inverts the sort order of the tunnel list' }),
  };

  async run(): Promise<TunnelDocument[]> {
    const docs = (
      await listTunnels(
        await this.store,
        {
          id: this.flags.id?.toLowerCase(),
          name: this.flags.name,
          namePrefix: this.flags['name-prefix'],
          excludeNamePrefix: this.flags['exclude-name-prefix'],
          showDeleted: this.flags['show-deleted'],
        },
        { by: this.flags['sort-by'], invert: this.flags['invert-sort'] },
      )
    ).map(tunnelDocument);
    await this.print(this.flags.output, docs, () =>
      docs.length === 0
        ? "No tunnels were found for the given filter flags. You can use 'oxyctl tunnel create' to create a tunnel.\n"
        : renderTable(
            ['ID', 'NAME', 'CREATED', 'CONNECTIONS'],
            docs.map((t) => [t.id, t.name, t.created_at, connectionsCell(t.connections)]),
          ),
    );
    return docs;
  }
}
