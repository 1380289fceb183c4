import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { vnetDocument, type VnetDocument } from '../../cli/documents.js';
import { updateVnet } from '../../core/vnets.js';

export default class VnetUpdate extends BaseCommand<typeof VnetUpdate> {
  static summary = 'Update a virtual network';
  static description =
    'Updates the virtual network (given its ID or name). If it becomes the new default, the previous default stops ' +
    'being the default. A virtual network cannot stop being the default directly: make another one the default instead.';
  static aliases = ['tunnel:vnet:update'];
  static examples = [
    '<%= config.bin %> vnet update --name vnet-fra --comment "Frankfurt" vnet-frankfurt',
    '<%= config.bin %> vnet update --default vnet-sydney',
  ];
  static args = { vnet: Args.string({ description: 'ID or (current) name of the virtual network', required: true }) };
  static flags = {
    name: Flags.string({ char: 'n', description: 'The new name for the virtual network.' }),
    comment: Flags.string({ char: 'c', description: 'A new comment describing the purpose of the virtual network.' }),
    default: Flags.boolean({ char: 'd', description: 'Make this the default virtual network.', allowNo: true }),
    output: outputFlag,
  };

  async run(): Promise<VnetDocument> {
    const vnet = await updateVnet(await this.store, this.args.vnet, {
      name: this.flags.name,
      comment: this.flags.comment,
      isDefault: this.flags.default,
    });
    const doc = vnetDocument(vnet);
    await this.print(this.flags.output, doc, () => `Successfully updated virtual network '${this.args.vnet}'\n`);
    return doc;
  }
}
