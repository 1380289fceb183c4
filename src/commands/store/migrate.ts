import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { migrateStore, type MigrateResult } from '../../core/stores.js';
import { storeUrlFor } from '../../store/index.js';

export default class StoreMigrate extends BaseCommand<typeof StoreMigrate> {
  static summary = "Bring the store's schema up to date";
  static description =
    'Applies the migrations the store lacks (each in its own transaction; any command also does this on first use) ' +
    'and prints the schema version. The store is --store, else OXY_STORE, else sqlite:$OXY_HOME/oxy.db. A store ' +
    'written by a newer oxyctl is refused.';
  static examples = ['<%= config.bin %> store migrate', '<%= config.bin %> store migrate --store postgres://oxy@db.internal/oxy'];
  static flags = { output: outputFlag };

  async run(): Promise<MigrateResult> {
    const result = await migrateStore(storeUrlFor(this.home, this.flags.store));
    await this.print(this.flags.output, result, () =>
      result.applied === 0
        ? `Store ${result.store} is up to date at schema version ${result.version}\n`
        : `Migrated store ${result.store} from schema version ${result.from} to ${result.version}\n`,
    );
    return result;
  }
}
