import { BaseCommand } from '../../cli/base-command.js';

export default class TunnelLogin extends BaseCommand<typeof TunnelLogin> {
  static summary = 'Accepted for cloudflared compatibility: oxyctl needs no login';
  static description =
    "cloudflared's login fetches a certificate for a Cloudflare account. oxyctl keeps tunnels in its own store (the data " +
    'directory), so there is nothing to log in to: this says so and succeeds, so setup scripts written for cloudflared keep running.';
  static examples = ['<%= config.bin %> tunnel login'];

  async run(): Promise<void> {
    process.stderr.write(`oxyctl needs no login: tunnels live in ${this.home} (create one with 'oxyctl tunnel create NAME').\n`);
  }
}
