import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { vnetDocument, type VnetDocument } from '../../cli/documents.js';
import { addVnet } from '../../core/vnets.js';

export default class VnetAdd extends BaseCommand<typeof VnetAdd> {
  static summary = 'Add a new virtual network to which IP routes can be attached';
  static description =
    'Adds a new virtual network. IP routes attached to it (oxyctl tunnel route ip add --vnet) are segregated from ' +
    'routes in other virtual networks, so two private networks with overlapping IPs can both be reached. The first ' +
    'virtual network becomes the default; with --default a new one replaces the current default.';
  static aliases = ['tunnel:vnet:add'];
  static examples = [
    '<%= config.bin %> vnet add --default vnet-frankfurt "For London and Munich employees primarily"',
    '<%= config.bin %> vnet add vnet-sydney "For APAC employees primarily"',
  ];
  static args = {
    name: Args.string({ description: 'Name of the virtual network', required: true }),
    comment: Args.string({ description: 'A comment describing its purpose' }),
  };
  static flags = {
    default: Flags.boolean({
      char: 'd',
      description: 'The virtual network becomes the default one: operations that omit a virtual network (such as new IP routes) use it.',
    }),
    output: outputFlag,
  };

  async run(): Promise<VnetDocument> {
    const vnet = await addVnet(await this.store, { name: this.args.name, comment: this.args.comment, isDefault: this.flags.default });
    const doc = vnetDocument(vnet);
    await this.print(
      this.flags.output,
      doc,
      () =>
        `Successfully added virtual 'network' ${vnet.name} with ID: ${vnet.id}${vnet.isDefault ? ' (as the new default for this account) ' : ''}\n` +
        'You can now add IP routes attached to this virtual network. See `oxyctl tunnel route ip add -h`\n',
    );
    return doc;
  }
}
