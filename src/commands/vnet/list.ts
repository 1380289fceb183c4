import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { renderTable, timeCell } from '../../cli/output.js';
import { vnetDocument, type VnetDocument } from '../../cli/documents.js';
import { listVnets } from '../../core/vnets.js';

export default class VnetList extends BaseCommand<typeof VnetList> {
  static summary = 'Lists the virtual networks';
  static description = 'Lists the virtual networks based on the given filter flags.';
  static aliases = ['tunnel:vnet:list'];
  static examples = ['<%= config.bin %> vnet list', '<%= config.bin %> vnet list --is-default -o json'];
  static flags = {
    id: Flags.string({ description: 'List virtual networks with the given ID' }),
    name: Flags.string({ description: 'List virtual networks with the given NAME' }),
    'is-default': Flags.boolean({ description: 'If true, lists the virtual network that is the default one.', allowNo: true }),
    'show-deleted': Flags.boolean({ description: 'If true, lists deleted virtual networks too.' }),
    output: outputFlag,
  };

  async run(): Promise<VnetDocument[]> {
    const docs = (
      await listVnets(await this.store, {
        id: this.flags.id?.toLowerCase(),
        name: this.flags.name,
        isDefault: this.flags['is-default'],
        showDeleted: this.flags['show-deleted'],
      })
    ).map(vnetDocument);
    await this.print(this.flags.output, docs, () =>
      docs.length === 0
        ? "No virtual networks were found for the given filter flags. You can use 'oxyctl vnet add' to add a virtual network.\n"
        : renderTable(
            ['ID', 'NAME', 'IS DEFAULT', 'COMMENT', 'CREATED', 'DELETED'],
            docs.map((v) => [v.id, v.name, String(v.is_default_network), v.comment, v.created_at, timeCell(v.deleted_at)]),
          ),
    );
    return docs;
  }
}
