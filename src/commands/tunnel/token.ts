import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { tunnelCredentials, tunnelToken } from '../../core/tunnels.js';
import { writeCredentialsFile } from '../../core/credentials.js';
import { localEdgeTrust } from '../../engine/transport/identity-files.js';
import { edgeEndpoints } from '../../core/edges.js';

export default class TunnelToken extends BaseCommand<typeof TunnelToken> {
  static summary = 'Fetch the credentials token for an existing tunnel (by name or UUID) that allows to run it';
  static description =
    "Prints a token that 'oxyctl tunnel run --token' accepts on another host: it carries the account, the tunnel ID " +
    'and its secret, so treat it like the credentials file. It also names the edges to dial: every edge running on this ' +
    "store ('oxyctl edge list'), else this host's edge, and the pin of this host's edge CA. With --credentials-file the " +
    'credentials JSON is written there instead.';
  static examples = ['<%= config.bin %> tunnel token example', '<%= config.bin %> tunnel token --credentials-file ./example.json example'];
  static args = { tunnel: Args.string({ description: 'ID or name of the tunnel', required: true }) };
  static flags = {
    'credentials-file': Flags.string({
      aliases: ['cred-file'],
      description: 'Write the credentials JSON to this file (mode 0400) instead of printing a token.',
    }),
  };

  async run(): Promise<{ token?: string; credentials_file?: string }> {
    const file = this.flags['credentials-file'];
    const edge = localEdgeTrust(this.home);
    if (file) {
      writeCredentialsFile(file, await tunnelCredentials(await this.store, this.args.tunnel, edge?.endpoint));
      process.stdout.write(`Tunnel credentials written to ${file}. Keep this file secret.\n`);
      return { credentials_file: file };
    }
    const store = await this.store;
    // The token carries every live edge of the store (a connector spreads over them), else this host's.
    const token = await tunnelToken(store, this.args.tunnel, { endpoint: await edgeEndpoints(store, edge?.endpoint), caPin: edge?.caPin });
    process.stdout.write(`${token}\n`);
    return { token };
  }
}
