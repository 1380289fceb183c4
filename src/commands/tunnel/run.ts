import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { tunnelRunFlags } from '../../cli/tunnel-run-flags.js';
import { loggerFrom } from '../../cli/log-flags.js';
import { runConnectorUntilSignal } from '../../cli/run-connector.js';
import { findConfigFile, loadConfig } from '../../engine/connector/config.js';

export default class TunnelRun extends BaseCommand<typeof TunnelRun> {
  static summary = 'Proxy a local web server by running the given tunnel';
  static description =
    'Runs the tunnel identified by name or UUID, creating highly available connections between this host and the edge, ' +
    'and serves what arrives: HTTP to origins chosen by ingress rules (--config, or --url / --hello-world). Needs the ' +
    "tunnel's credentials: --token, --credentials-file, the file 'tunnel create' wrote, or the local store. On " +
    'SIGINT/SIGTERM it stops taking new requests and lets in-flight ones finish within --grace-period.';
  static examples = [
    '<%= config.bin %> tunnel run --hello-world example',
    '<%= config.bin %> tunnel run --url http://localhost:8080 --protocol http2 example',
    '<%= config.bin %> tunnel run --token "$(oxyctl tunnel token example)"',
    '<%= config.bin %> tunnel run --config ./config.yml',
  ];
  static args = { tunnel: Args.string({ description: 'ID or name of the tunnel' }) };
  static flags = {
    ...tunnelRunFlags,
    config: Flags.string({ description: 'Path to the config file (YAML) [default: config.yml in the data directory]' }),
    'credentials-file': Flags.string({ aliases: ['cred-file'], description: 'File path of tunnel credentials', env: 'TUNNEL_CRED_FILE' }),
    token: Flags.string({ description: "The tunnel token, from 'oxyctl tunnel token'", env: 'TUNNEL_TOKEN' }),
  };

  async run(): Promise<void> {
    const configFile = findConfigFile(this.home, this.flags.config);
    const config = configFile ? loadConfig(configFile) : undefined;
    await runConnectorUntilSignal(loggerFrom(this.flags), {
      home: this.home,
      store: () => this.store,
      tunnelRef: this.args.tunnel,
      token: this.flags.token,
      credentialsFile: this.flags['credentials-file'],
      config,
      flags: this.flags,
      version: this.config.version,
    });
  }
}
