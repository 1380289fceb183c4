import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { createDashboardToken } from '../../core/dashboard.js';

export default class EdgeDashboardToken extends BaseCommand<typeof EdgeDashboardToken> {
  static summary = "Print a new login token for the edge's web dashboard";
  static description =
    "Makes a new token for the dashboard that 'oxyctl edge run --dashboard-listen' serves, and prints it: this is the only " +
    'time it is shown (the store keeps its SHA-256 only). The previous token stops working, and so do the browser ' +
    'sessions that logged in with it. API clients send it as `Authorization: Bearer TOKEN` (see docs/dashboard-api.md).';
  static examples = ['<%= config.bin %> edge dashboard-token', '<%= config.bin %> edge dashboard-token -o json'];
  static flags = { output: outputFlag };

  async run(): Promise<{ token: string }> {
    const doc = { token: await createDashboardToken(await this.store) };
    await this.print(this.flags.output, doc, () => `${doc.token}\n`);
    return doc;
  }
}
