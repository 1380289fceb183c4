import { sequentially } from '../../core/common.js';
import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag, yesFlag } from '../../cli/flags.js';
import { confirmDestructive } from '../../cli/confirm.js';
import { tunnelDocument, type TunnelDocument } from '../../cli/documents.js';
import { deleteTunnels, resolveTunnel } from '../../core/tunnels.js';

export default class TunnelDelete extends BaseCommand<typeof TunnelDelete> {
  static summary = 'Delete existing tunnel by UUID or name';
  static description =
    'Deletes tunnels given their IDs or names, all or none. A tunnel with active connections or IP routes is kept ' +
    'unless --force is given, which also deletes its routes and public hostnames.';
  static strict = false;
  static examples = ['<%= config.bin %> tunnel delete --yes example', '<%= config.bin %> tunnel delete --force tunnel-a tunnel-b'];
  static args = { tunnel: Args.string({ description: 'ID or name of a tunnel (several may be given)', required: true }) };
  static flags = {
    force: Flags.boolean({ char: 'f', description: 'Delete even with active connections; its routes and hostnames are deleted too.' }),
    yes: yesFlag,
    output: outputFlag,
  };

  async run(): Promise<(TunnelDocument & { deleted_routes: number })[]> {
    const refs = this.positionals;
    const store = await this.store;
    const names = (await sequentially(refs, (r) => resolveTunnel(store, r))).map((t) => t.name);
    await confirmDestructive(`Delete tunnel(s) ${names.join(', ')}?`, this.flags.yes || this.flags.force);
    const docs = (await deleteTunnels(store, refs, { force: this.flags.force })).map((d) => ({
      ...tunnelDocument(d.tunnel),
      deleted_routes: d.deletedRoutes,
    }));
    await this.print(this.flags.output, docs, () => docs.map((t) => `Deleted tunnel ${t.name} with id ${t.id}\n`).join(''));
    return docs;
  }
}
