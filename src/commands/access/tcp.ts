import { Flags } from '@oclif/core';
import { exitOnCrash } from '../../cli/crash.js';
import { BaseCommand } from '../../cli/base-command.js';
import { logFlags, loggerFrom } from '../../cli/log-flags.js';
import { shutdownSignal } from '../../cli/signals.js';
import { startAccessTcp } from '../../engine/access/tcp.js';
import { splitHostPort } from '../../core/address.js';

export default class AccessTcp extends BaseCommand<typeof AccessTcp> {
  static summary = 'Connect to a tcp:// service behind a tunnel through a local listener';
  static description =
    "Listens on --url; every connection made to it is carried through the edge to the hostname's tcp:// (or ssh://) " +
    'ingress service, as `cloudflared access tcp` does.';
  static aliases = ['access:ssh'];
  static examples = ['<%= config.bin %> access tcp --hostname ssh.example.com --url 127.0.0.1:2222', 'ssh -p 2222 user@127.0.0.1'];
  static flags = {
    hostname: Flags.string({ required: true, description: 'Public hostname of the tcp:// service' }),
    url: Flags.string({ required: true, description: 'HOST:PORT to listen on locally' }),
    destination: Flags.string({ description: 'HOST:PORT a bastion service should connect to (Cf-Access-Jump-Destination)' }),
    edge: Flags.string({ default: 'http://127.0.0.1:8080', description: "URL of the edge's public HTTP listener" }),
    ...logFlags,
  };

  async run(): Promise<void> {
    const log = loggerFrom(this.flags);
    exitOnCrash(log);
    const server = await startAccessTcp({
      edgeUrl: this.flags.edge,
      hostname: this.flags.hostname,
      destination: this.flags.destination,
      listen: splitHostPort(this.flags.url),
      log,
    });
    await shutdownSignal();
    server.close();
  }
}
