import { Args } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { cleanupTunnels } from '../../core/tunnels.js';

export default class TunnelCleanup extends BaseCommand<typeof TunnelCleanup> {
  static summary = 'Cleanup tunnel connections';
  static description = 'Forgets the recorded connections of the tunnels with the given IDs or names (e.g. after a connector crashed).';
  static strict = false;
  static examples = ['<%= config.bin %> tunnel cleanup example'];
  static args = { tunnel: Args.string({ description: 'ID or name of a tunnel (several may be given)', required: true }) };

  async run(): Promise<{ id: string; name: string; forgotten_connections: number }[]> {
    const refs = this.positionals;
    const result = (await cleanupTunnels(await this.store, refs)).map((c) => ({ id: c.tunnel.id, name: c.tunnel.name, forgotten_connections: c.forgotten }));
    for (const r of result) process.stdout.write(`Cleaned up ${r.forgotten_connections} connection(s) of tunnel ${r.name} with id ${r.id}\n`);
    return result;
  }
}
