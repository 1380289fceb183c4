import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { tunnelDocument, type TunnelDocument } from '../../cli/documents.js';
import { createTunnel } from '../../core/tunnels.js';

export default class TunnelCreate extends BaseCommand<typeof TunnelCreate> {
  static summary = 'Create a new tunnel with given name';
  static description =
    'Creates a tunnel and writes its credentials file (<TUNNEL-ID>.json in the data directory, mode 0400) that ' +
    "'oxyctl tunnel run' needs. Keep this file secret; to revoke it, delete the tunnel.";
  static examples = ['<%= config.bin %> tunnel create example', '<%= config.bin %> tunnel create --credentials-file ./example.json example'];
  static args = { name: Args.string({ description: 'TUNNEL-NAME (not a UUID)', required: true }) };
  static flags = {
    'credentials-file': Flags.string({ aliases: ['cred-file'], description: 'Filepath at which to create the credentials file.' }),
    secret: Flags.string({ char: 's', description: 'Base64 encoded secret (at least 32 bytes) to set for the tunnel; random if absent.' }),
    output: outputFlag,
  };

  async run(): Promise<TunnelDocument & { credentials_file: string }> {
    const { tunnel, credentialsFile } = await createTunnel(await this.store, {
      name: this.args.name,
      secret: this.flags.secret,
      credentialsFile: this.flags['credentials-file'],
    });
    const doc = { ...tunnelDocument(tunnel), credentials_file: credentialsFile };
    await this.print(
      this.flags.output,
      doc,
      () =>
        `Tunnel credentials written to ${credentialsFile}. Keep this file secret. To revoke these credentials, delete the tunnel.\n\n` +
        `Created tunnel ${tunnel.name} with id ${tunnel.id}\n`,
    );
    return doc;
  }
}
