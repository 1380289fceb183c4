import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag, yesFlag } from '../../cli/flags.js';
import { confirmDestructive } from '../../cli/confirm.js';
import { vnetDocument, type VnetDocument } from '../../cli/documents.js';
import { assertVnetDeletable, deleteVnet, resolveVnet } from '../../core/vnets.js';

export default class VnetDelete extends BaseCommand<typeof VnetDelete> {
  static summary = 'Delete a virtual network';
  static description =
    'Deletes the virtual network (given its ID or name). This is only possible if no IP route uses it, unless --force ' +
    'is given, which deletes its routes in the same transaction. The default virtual network cannot be deleted.';
  static aliases = ['tunnel:vnet:delete'];
  static examples = ['<%= config.bin %> vnet delete vnet-sydney', '<%= config.bin %> vnet delete --force --yes vnet-sydney'];
  static args = { vnet: Args.string({ description: 'ID or name of the virtual network', required: true }) };
  static flags = {
    force: Flags.boolean({ char: 'f', description: 'Delete the virtual network even if IP routes use it; those routes are deleted too.' }),
    yes: yesFlag,
    output: outputFlag,
  };

  async run(): Promise<VnetDocument & { deleted_routes: number }> {
    const store = await this.store;
    const vnet = await resolveVnet(store, this.args.vnet);
    await assertVnetDeletable(store, vnet, this.flags.force);
    await confirmDestructive(`Delete virtual network ${vnet.name} (${vnet.id})?`, this.flags.yes || this.flags.force);
    const { vnet: deleted, deletedRoutes } = await deleteVnet(store, vnet.id, { force: this.flags.force });
    const doc = { ...vnetDocument(deleted), deleted_routes: deletedRoutes };
    await this.print(this.flags.output, doc, () => `Successfully deleted virtual network '${this.args.vnet}'\n`);
    return doc;
  }
}
