import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { checkReady } from '../../engine/observe/diag.js';

export default class TunnelReady extends BaseCommand<typeof TunnelReady> {
  static summary = 'Call /ready endpoint and return proper exit code';
  static description =
    "Asks a running connector's metrics server (--metrics, as given to tunnel run) whether it has a registered " +
    'connection: exit 0 when /ready answers 200, else 1 with its status and document, as cloudflared does.';
  static examples = ['<%= config.bin %> tunnel ready --metrics 127.0.0.1:20241'];
  static flags = {
    metrics: Flags.string({ required: true, description: "HOST:PORT of the connector's metrics server", env: 'TUNNEL_METRICS' }),
  };

  async run(): Promise<void> {
    await checkReady(this.flags.metrics);
  }
}
