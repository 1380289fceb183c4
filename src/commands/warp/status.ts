import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { readWarpState, type WarpState } from '../../core/warp-state.js';

export default class WarpStatus extends BaseCommand<typeof WarpStatus> {
  static summary = 'Show whether warp is connected, in which virtual network, with which routes';
  static examples = ['<%= config.bin %> warp status', '<%= config.bin %> warp status -o json'];
  static flags = { output: outputFlag };

  async run(): Promise<{ connected: boolean } & Partial<WarpState>> {
    const state = readWarpState(this.home);
    const doc = state ? { connected: true, ...state } : { connected: false };
    await this.print(this.flags.output, doc, () =>
      state
        ? `Status update: Connected\nVirtual network: ${state.vnetName} (${state.vnetId})\nRoutes: ${state.routes.join(', ')}\nDevice: ${state.tun}\nEdge: ${state.edge}${state.protocol ? ` (${state.protocol})` : ''}\nSince: ${state.since}\n`
        : 'Status update: Disconnected\n',
    );
    return doc;
  }
}
