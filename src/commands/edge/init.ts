import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { outputFlag } from '../../cli/flags.js';
import { initEdgeIdentity } from '../../engine/transport/identity-files.js';

export default class EdgeInit extends BaseCommand<typeof EdgeInit> {
  static summary = "Create the edge's identity: a CA and a server certificate";
  static description =
    'Creates a private CA and a server certificate for the edge in <home>/edge (keys mode 0400). Connectors trust the CA: ' +
    "on this host through the data directory, elsewhere through the CA pin that 'oxyctl tunnel token' puts into tokens, " +
    'together with the --advertise address connectors dial.';
  static examples = [
    '<%= config.bin %> edge init',
    '<%= config.bin %> edge init --hostname edge.example.com --ip 198.18.0.1 --advertise edge.example.com:7844',
  ];
  static flags = {
    hostname: Flags.string({ multiple: true, description: 'DNS name the certificate is valid for (repeatable) [default: localhost]' }),
    ip: Flags.string({ multiple: true, description: 'IP address the certificate is valid for (repeatable) [default: 127.0.0.1, ::1]' }),
    advertise: Flags.string({ description: 'HOST:PORT connectors dial, written into tokens [default: 127.0.0.1:7844]' }),
    force: Flags.boolean({ char: 'f', description: 'Replace an existing identity' }),
    output: outputFlag,
  };

  async run(): Promise<{ ca_pin: string; advertise: string; hostnames: string[]; ips: string[] }> {
    const { identity, settings } = await initEdgeIdentity(this.home, {
      hostnames: this.flags.hostname,
      ips: this.flags.ip,
      advertise: this.flags.advertise,
      force: this.flags.force,
    });
    const doc = { ca_pin: identity.caPin, advertise: settings.advertise, hostnames: settings.hostnames, ips: settings.ips };
    await this.print(
      this.flags.output,
      doc,
      () => `Created the edge identity in ${this.home}/edge\nCA pin (sha256 of its public key): ${identity.caPin}\nConnectors dial: ${settings.advertise}\n`,
    );
    return doc;
  }
}
