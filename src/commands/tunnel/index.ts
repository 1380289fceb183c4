import { Flags } from '@oclif/core';
import { exitOnCrash } from '../../cli/crash.js';
import { BaseCommand } from '../../cli/base-command.js';
import { configFileFlags, connectorOptions, namedTunnelFlags, tunnelRunFlags } from '../../cli/tunnel-run-flags.js';
import { applyConfigFile } from '../../cli/config-file.js';
import { OxyError } from '../../core/errors.js';
import { loggerFrom } from '../../cli/log-flags.js';
import { shutdownSignal } from '../../cli/signals.js';
import { startQuickTunnel } from '../../engine/quick-tunnel.js';

export default class QuickTunnel extends BaseCommand<typeof QuickTunnel> {
  static summary = 'Start a quick tunnel: a local edge and a tunnel to one origin, printing the URL';
  static description =
    'With no setup at all, starts an edge and a connector in this process around an ephemeral tunnel and prints the URL ' +
    'that reaches the origin (--url, or the built-in hello world with --hello-world). Nothing is kept when it stops. ' +
    "For named tunnels see 'oxyctl tunnel create' and 'oxyctl tunnel run'. As cloudflared's, it reads config.yml " +
    '(--config, else where tunnel run looks): its top-level keys set the flags of the same name (protocol, metrics, ' +
    'loglevel, logfile, …; the command line and environment win) and its ingress rules, if any, serve the requests.';
  static examples = ['<%= config.bin %> tunnel --hello-world', '<%= config.bin %> tunnel --url http://localhost:3000'];
  static flags = {
    ...tunnelRunFlags,
    config: namedTunnelFlags.config,
    'http-listen': Flags.string({ default: '127.0.0.1:0', description: 'HOST:PORT of the public HTTP listener (port 0 picks a free one)' }),
  };

  async run(): Promise<{ url: string }> {
    const flags = this.flags as typeof this.flags & Record<string, unknown>;
    const { config, file, applied } = await applyConfigFile({
      home: this.home,
      explicit: this.flags.config,
      flagDefs: configFileFlags,
      flags,
      explicitFlags: this.explicitFlags,
    });
    // cloudflared's TunnelCommand: a quick tunnel needs --url or --hello-world (flag, env or file).
    if (!this.flags.url && !this.flags['hello-world']) {
      if (config?.tunnel)
        throw new OxyError(
          'OXY_ERR_USAGE',
          `Use 'oxyctl tunnel run' to start tunnel ${config.tunnel} (${file} names it); 'oxyctl tunnel' alone starts a quick tunnel, with --url or --hello-world.`,
        );
      throw new OxyError(
        'OXY_ERR_USAGE',
        "You did not specify any valid additional argument to the oxyctl tunnel command. To run a quick tunnel pass --url (e.g. oxyctl tunnel --url localhost:8080) or --hello-world; to run a named tunnel, 'oxyctl tunnel run NAME'.",
      );
    }
    // The keys that name a tunnel or its edge: a quick tunnel makes its own (cloudflared ignores them here too).
    const named = [...(config?.tunnel ? ['tunnel'] : []), ...(config?.credentialsFile ? ['credentials-file'] : [])];
    named.push(...applied.filter((k) => k in namedTunnelFlags || k === 'edge' || k === 'edge-ca').filter((k) => k !== 'config'));
    if (named.length > 0)
      process.stderr.write(
        `Note: ${file}: ${named.join(', ')} ha${named.length === 1 ? 's' : 've'} no effect on a quick tunnel (it makes its own tunnel and edge; 'oxyctl tunnel run' runs a named one)\n`,
      );
    const log = loggerFrom(this.flags);
    exitOnCrash(log);
    const signalled = shutdownSignal();
    const options = connectorOptions(this.flags);
    const quick = await startQuickTunnel({ log, httpListen: this.flags['http-listen'], version: this.config.version, options, config });
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
