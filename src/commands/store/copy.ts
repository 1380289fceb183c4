import { Args } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { copyStores, type CopyResult } from '../../core/stores.js';

export default class StoreCopy extends BaseCommand<typeof StoreCopy> {
  static summary = 'Copy every vnet, tunnel, route, hostname and device into a new store';
  static description =
    'Moves a single-host setup to a shared PostgreSQL store (or back): every row of every table, with the same IDs, ' +
    'secrets, timestamps and account tag, in one transaction on the destination, which must be empty. Counts and IDs ' +
    "are compared after the copy. Then point every edge and CLI at the destination (--store, OXY_STORE, or the edge YAML's store:).";
  static examples = [
    '<%= config.bin %> store copy sqlite:/var/lib/oxyctl/oxy.db postgres://oxy@db.internal/oxy',
    '<%= config.bin %> store copy postgres://oxy@db.internal/oxy sqlite:./backup.db',
  ];
  static args = {
    from: Args.string({ description: 'Source store URL (sqlite:PATH or postgres://USER@HOST/DB)', required: true }),
    to: Args.string({ description: 'Destination store URL; an empty store (it is created and migrated if new)', required: true }),
  };
  static flags = { output: outputFlag };

  async run(): Promise<CopyResult> {
    const result = await copyStores(this.home, this.args.from, this.args.to);
    await this.print(
      this.flags.output,
      result,
      () =>
        `Copied ${Object.entries(result.rows)
          .filter(([t]) => t !== 'account')
          .map(([t, n]) => `${n} ${t}`)
          .join(', ')}\n` + `from ${result.from} to ${result.to} (account ${result.accountTag})\n`,
    );
    return result;
  }
}
