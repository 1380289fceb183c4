import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { renderTable, timeCell } from '../../cli/output.js';

export default class WarpDevices extends BaseCommand<typeof WarpDevices> {
  static summary = 'List the devices enrolled with warp enroll';
  static examples = ['<%= config.bin %> warp devices', '<%= config.bin %> warp devices --show-deleted -o json'];
  static flags = {
    'show-deleted': Flags.boolean({ char: 'd', description: 'Include revoked devices' }),
    output: outputFlag,
  };

  async run(): Promise<{ id: string; name: string; created_at: string; deleted_at: string | null }[]> {
    const docs = (await (await this.store).devices.list(this.flags['show-deleted'])).map((d) => ({
      id: d.id,
      name: d.name,
      created_at: d.createdAt,
      deleted_at: d.deletedAt,
    }));
    await this.print(this.flags.output, docs, () =>
      docs.length === 0
        ? "No devices are enrolled; use 'oxyctl warp enroll NAME' to enroll one.\n"
        : renderTable(
            ['ID', 'NAME', 'CREATED', 'DELETED'],
            docs.map((d) => [d.id, d.name, d.created_at, timeCell(d.deleted_at)]),
          ),
    );
    return docs;
  }
}
