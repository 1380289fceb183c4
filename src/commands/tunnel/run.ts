import { Args } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { configFileFlags, connectorOptions, namedTunnelFlags, tunnelRunFlags } from '../../cli/tunnel-run-flags.js';
import { loggerFrom } from '../../cli/log-flags.js';
import { runConnectorUntilSignal } from '../../cli/run-connector.js';
import { applyConfigFile } from '../../cli/config-file.js';

export default class TunnelRun extends BaseCommand<typeof TunnelRun> {
  static summary = 'Proxy a local web server by running the given tunnel';
  static description =
    'Runs the tunnel identified by name or UUID, creating highly available connections between this host and the edge, ' +
    'and serves what arrives: HTTP to origins chosen by ingress rules (--config, or --url / --hello-world). Needs the ' +
    "tunnel's credentials: --token, --credentials-file, the file 'tunnel create' wrote, or the local store. A config " +
    "file's top-level keys set the flags of the same name (the command line and environment win); it is looked for in " +
    "the data directory, ~/.oxyctl, /etc/oxyctl, /usr/local/etc/oxyctl, then cloudflared's directories. On " +
    'SIGINT/SIGTERM it stops taking new requests and lets in-flight ones finish within --grace-period.';
  static examples = [
    '<%= config.bin %> tunnel run --hello-world example',
    '<%= config.bin %> tunnel run --url http://localhost:8080 --protocol http2 example',
    '<%= config.bin %> tunnel --protocol quic run example',
    '<%= config.bin %> tunnel run --token "$(oxyctl tunnel token example)"',
    '<%= config.bin %> tunnel run --config ./config.yml',
  ];
  static args = { tunnel: Args.string({ description: 'ID or name of the tunnel' }) };
  static flags = { ...tunnelRunFlags, ...namedTunnelFlags };

  async run(): Promise<void> {
    const flags = this.flags as typeof this.flags & Record<string, unknown>;
    const { config } = await applyConfigFile({
      home: this.home,
      explicit: this.flags.config,
      flagDefs: configFileFlags,
      flags,
      explicitFlags: this.explicitFlags,
    });
    await runConnectorUntilSignal(loggerFrom(this.flags), {
      home: this.home,
      store: () => this.store,
      tunnelRef: this.args.tunnel,
      token: this.flags.token,
      tokenFile: this.flags['token-file'],
      credentialsFile: this.flags['credentials-file'],
      credentialsContents: this.flags['credentials-contents'],
      config,
      options: connectorOptions(this.flags),
      version: this.config.version,
    });
  }
}
