import { Flags } from '@oclif/core';
import { exitOnCrash } from '../../cli/crash.js';
import { BaseCommand } from '../../cli/base-command.js';
import { connectorOptions, tunnelRunFlags } from '../../cli/tunnel-run-flags.js';
import { loggerFrom } from '../../cli/log-flags.js';
import { shutdownSignal } from '../../cli/signals.js';
import { startQuickTunnel } from '../../engine/quick-tunnel.js';

export default class QuickTunnel extends BaseCommand<typeof QuickTunnel> {
  static summary = 'Start a quick tunnel: a local edge and a tunnel to one origin, printing the URL';
  static description =
    'With no setup at all, starts an edge and a connector in this process around an ephemeral tunnel and prints the URL ' +
    'that reaches the origin (--url, or the built-in hello world with --hello-world). Nothing is kept when it stops. ' +
    "For named tunnels see 'oxyctl tunnel create' and 'oxyctl tunnel run'.";
  static examples = ['<%= config.bin %> tunnel --hello-world', '<%= config.bin %> tunnel --url http://localhost:3000'];
  static flags = {
    ...tunnelRunFlags,
    'http-listen': Flags.string({ default: '127.0.0.1:0', description: 'HOST:PORT of the public HTTP listener (port 0 picks a free one)' }),
  };

  async run(): Promise<{ url: string }> {
    const log = loggerFrom(this.flags);
    exitOnCrash(log);
    const signalled = shutdownSignal();
    const options = connectorOptions(this.flags);
    const quick = await startQuickTunnel({ log, httpListen: this.flags['http-listen'], version: this.config.version, options });
    const line = `|  ${quick.url}`;
    const banner = 'Your quick Tunnel has been created! Visit it at:';
    const width = Math.max(banner.length, quick.url.length) + 4;
    log.info(`\n+${'-'.repeat(width)}+\n|  ${banner.padEnd(width - 2)}|\n${line.padEnd(width + 1)}|\n+${'-'.repeat(width)}+`);
    process.stdout.write(`${quick.url}\n`);
    const signal = await signalled;
    log.info({ signal }, 'Initiating graceful shutdown due to signal');
    await quick.stop(options.gracePeriodMs);
    return { url: quick.url };
  }
}
