import { BaseCommand } from '../cli/base-command.js';

export default class Update extends BaseCommand<typeof Update> {
  static summary = 'Accepted for cloudflared compatibility: oxyctl is updated by its package manager';
  static description =
    'cloudflared updates itself. oxyctl is installed from its .deb/.rpm repository (see packaging/README.md) and updated ' +
    'with apt or dnf: this says so and succeeds without changing anything (exit 0, as cloudflared when no update applied).';
  static examples = ['<%= config.bin %> update'];

  async run(): Promise<void> {
    process.stderr.write(
      'oxyctl does not update itself: update it with your package manager (apt-get install --only-upgrade oxyctl, or dnf upgrade oxyctl).\n',
    );
  }
}
